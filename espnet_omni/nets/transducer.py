"""RNN-T (transducer) ASR on CPU with torchaudio's loss (``model: transducer_torchaudio``).

ESPnet's ``ESPnetASRModel`` trains a transducer when the config says
``decoder: transducer`` (ESPnet builds the prediction network and the joint
network), but takes its loss from ``warprnnt_pytorch`` (warp-transducer), a
CUDA extension that is not on PyPI. :class:`TransducerASRModel` is that same
ESPnet model with :func:`torchaudio.functional.rnnt_loss` (CPU and GPU) behind
warp-transducer's interface; training, reporting and ESPnet's transducer beam
search (``Speech2Text``) are ESPnet's. Works with any encoder, ours included::

    model: transducer_torchaudio
    model_conf: {ctc_weight: 0.3, report_cer: false, report_wer: false}
    decoder: transducer
    decoder_conf: {rnn_type: lstm, num_layers: 1, hidden_size: 256}
    joint_net_conf: {joint_space_size: 256}
"""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from typing import Iterator

import torch
import torchaudio
from espnet2.asr.espnet_model import ESPnetASRModel


class TorchaudioRNNTLoss(torch.nn.Module):
    """warp-transducer's ``RNNTLoss(acts, labels, act_lens, label_lens)`` on
    :func:`torchaudio.functional.rnnt_loss` (log-softmax fused, mean over the batch).

    Args:
        blank: blank token id.
        fastemit_lambda: must be 0 (torchaudio has no FastEmit).
        reduction: ``mean`` | ``sum`` | ``none``.
    """

    def __init__(self, blank: int = 0, fastemit_lambda: float = 0.0, reduction: str = "mean"):
        super().__init__()
        if fastemit_lambda:
            raise NotImplementedError(f"fastemit_lambda={fastemit_lambda}: torchaudio's rnnt_loss has no FastEmit")
        self.blank, self.reduction = blank, reduction

    def forward(self, acts: torch.Tensor, labels: torch.Tensor, act_lens: torch.Tensor,
                label_lens: torch.Tensor) -> torch.Tensor:
        """acts ``(B, T, U+1, V)`` joint logits; labels ``(B, U)``; lengths ``(B,)``."""
        return torchaudio.functional.rnnt_loss(
            acts.float(), labels.int(), act_lens.int(), label_lens.int(),
            blank=self.blank, reduction=self.reduction)


@contextmanager
def _warprnnt_on_torchaudio() -> Iterator[None]:
    """Within the block, ``from warprnnt_pytorch import RNNTLoss`` gives
    :class:`TorchaudioRNNTLoss` (sys.modules is restored afterwards)."""
    saved = sys.modules.get("warprnnt_pytorch")
    shim = types.ModuleType("warprnnt_pytorch")
    shim.RNNTLoss = TorchaudioRNNTLoss
    sys.modules["warprnnt_pytorch"] = shim
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("warprnnt_pytorch", None)
        else:
            sys.modules["warprnnt_pytorch"] = saved


def is_transducer(model: torch.nn.Module) -> bool:
    """An RNN-T model: ESPnet's transducer decoder and joint network (``decoder: transducer``)
    rather than CTC (and attention) alone. The one test the decoders, the search, the
    distillation and the exports make."""
    return bool(getattr(model, "use_transducer_decoder", False))


class TransducerASRModel(ESPnetASRModel):
    """``ESPnetASRModel`` whose transducer loss is torchaudio's (same arguments)."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("transducer_multi_blank_durations"):
            raise NotImplementedError("model: transducer_torchaudio has no multi-blank transducer")
        with _warprnnt_on_torchaudio():
            super().__init__(*args, **kwargs)
        if not self.use_transducer_decoder:
            raise ValueError("model: transducer_torchaudio needs 'decoder: transducer' (and joint_net_conf)")
