"""The Conformer's conv2d subsampling as an ESPnet pre-encoder.

wav2vec 2.0 masks the output of its *feature encoder* (the convolutional
front end) and quantizes that output as the targets. ESPnet's SSL model
(:class:`espnet2.ssl.espnet_model.ESPnetSSLModel`) masks the *encoder input*,
i.e. what comes out of the pre-encoder. So for pretraining, the Conformer's
``conv2d`` subsampling moves from ``encoder.embed`` into this pre-encoder and
the encoder runs with ``input_layer: null`` (it keeps only the positional
encoding). The parameter names are those of ESPnet's ``Conv2dSubsampling``
(``conv.0``, ``conv.2``, ``out``), so fine-tuning maps them back into a
stock-shaped encoder with ESPnet's ``--init_param``::

    --init_param exp/ssl/valid.loss.ave.pth:preencoder:encoder.embed \\
                 exp/ssl/valid.loss.ave.pth:encoder:encoder

Pretraining config (YAML)::

    preencoder: conv2d_subsampling
    preencoder_conf: {output_size: 144}
    encoder: omni_conformer
    encoder_conf: {output_size: 144, input_layer: null, ...}
"""

from __future__ import annotations

import torch
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from typeguard import typechecked


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Output frames of two stride-2, kernel-3 convolutions (ESPnet's
    ``Conv2dSubsampling`` mask arithmetic ``[:-2:2][:-2:2]``).

    >>> subsampled_lengths(torch.tensor([7, 8, 100])).tolist()
    [1, 1, 24]
    """
    return ((lengths - 1) // 2 - 1) // 2


class Conv2dSubsamplingPreEncoder(AbsPreEncoder):
    """``(B, T, input_size)`` features -> ``(B, (T-1)//2-1)//2, output_size)``.

    Exactly ESPnet's ``Conv2dSubsampling`` without its positional encoding
    (the encoder adds that): two ``Conv2d(k=3, s=2)`` + ReLU, then a Linear.

    Args:
        input_size: feature dimension (e.g. 40 mel bins).
        output_size: channels of the convolutions and the output dimension
            (the encoder's ``output_size``).
    """

    @typechecked
    def __init__(self, input_size: int, output_size: int = 256):
        super().__init__()
        if input_size < 7 or output_size < 1:
            raise ValueError(f"preencoder_conf: input_size={input_size} must be >= 7 and "
                             f"output_size={output_size} >= 1")
        self._output_size = output_size
        self.conv = torch.nn.Sequential(
            torch.nn.Conv2d(1, output_size, 3, 2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(output_size, output_size, 3, 2),
            torch.nn.ReLU(),
        )
        self.out = torch.nn.Linear(output_size * (((input_size - 1) // 2 - 1) // 2), output_size)

    def output_size(self) -> int:
        return self._output_size

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Subsample by 4 in time.

        Raises:
            ValueError: fewer than 7 frames (no output frame).
        """
        if input.size(1) < 7:
            raise ValueError(f"conv2d_subsampling needs >= 7 input frames, got {input.size(1)}")
        x = self.conv(input.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.size()
        x = self.out(x.transpose(1, 2).contiguous().view(b, t, c * f))
        return x, subsampled_lengths(input_lengths).clamp(min=0, max=t)
