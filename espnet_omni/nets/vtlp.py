"""Vocal-tract-length perturbation on the mel filterbank, on the fly, then SpecAugment.

``specaug: vtlp_specaug`` in a training config (ESPnet's ``--specaug``):
every training utterance gets its own random warp factor ``alpha`` of the
frequency axis (Jaitly & Hinton, "Vocal Tract Length Perturbation (VTLP)
improves speech recognition", 2013), then ESPnet's own
:class:`espnet2.asr.specaug.specaug.SpecAug` with the rest of ``specaug_conf``.
Decoding never augments (ESPnet applies ``specaug`` in training only), so an
exported or streamed model is unchanged.

The warp is the paper's piecewise-linear map of frequency ``f`` (Hz), with
``f_hi`` the boundary above which it bends so that Nyquist maps to Nyquist::

    g(f) = alpha * f                                        f <= f_hi * min(alpha, 1) / alpha
    g(f) = N - (N - f_hi * min(alpha, 1)) / (N - f_hi * min(alpha, 1) / alpha) * (N - f)   above

Applied to the log-mel features the front end already computed: output bin
``i`` (centre frequency ``c_i``) takes the log energy the utterance has at
frequency ``g(c_i)``, interpolated linearly between the two neighbouring mel
bins' centres (on the mel scale). ``alpha > 1`` moves spectral content down
(a longer vocal tract), ``alpha < 1`` up. The bin centres are librosa's (as
ESPnet's ``LogMel`` builds its filterbank): ``fs``, ``n_mels``, ``fmin``,
``fmax`` must be the front end's.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import librosa
import numpy as np
import torch
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.asr.specaug.specaug import SpecAug


def warp_frequencies(freqs: torch.Tensor, alpha: torch.Tensor, f_hi: float, nyquist: float) -> torch.Tensor:
    """The piecewise-linear VTLP map ``g`` of ``freqs`` (Hz, shape ``(F,)``) per ``alpha`` (``(B,)``).

    Returns ``(B, F)``; ``g(0) = 0``, ``g(nyquist) = nyquist``, monotone.

    >>> g = warp_frequencies(torch.tensor([0.0, 1000.0, 8000.0]), torch.tensor([1.1]), 4800.0, 8000.0)
    >>> [round(float(v), 1) for v in g[0]]
    [0.0, 1100.0, 8000.0]
    """
    f = freqs[None, :]
    a = alpha[:, None]
    knee = f_hi * torch.clamp(a, max=1.0)  # g at the bend
    bend = knee / a  # f at the bend
    low = a * f
    high = nyquist - (nyquist - knee) / (nyquist - bend) * (nyquist - f)
    return torch.where(f <= bend, low, high)


class VTLPSpecAug(AbsSpecAug):
    """VTLP (a random warp factor per utterance) followed by ESPnet's SpecAugment.

    Args:
        vtlp_alpha_range: ``[low, high]``: ``alpha`` is drawn uniformly from it
            per utterance (the paper: 0.9 .. 1.1).
        vtlp_prob: the probability that an utterance is warped at all.
        vtlp_f_hi: the bend of the warp (Hz; the paper: 4800 for 16 kHz).
        fs, n_mels, fmin, fmax: the front end's filterbank (``frontend_conf``);
            ``fmax`` None is ``fs / 2`` as in ESPnet's ``LogMel``.
        **specaug_conf: ESPnet's ``SpecAug`` arguments (time warp, masks); with
            none of its ``apply_*`` switches on, only VTLP is applied.
    """

    def __init__(
        self,
        vtlp_alpha_range: Sequence[float] = (0.9, 1.1),
        vtlp_prob: float = 1.0,
        vtlp_f_hi: float = 4800.0,
        fs: int = 16000,
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        **specaug_conf,
    ) -> None:
        super().__init__()
        low, high = (float(v) for v in vtlp_alpha_range)
        if not 0.5 <= low <= high <= 2.0:
            raise ValueError(
                f"specaug_conf vtlp_alpha_range={list(vtlp_alpha_range)}: expected [low, high] "
                "with 0.5 <= low <= high <= 2.0 (the paper: [0.9, 1.1])"
            )
        if not 0.0 <= vtlp_prob <= 1.0:
            raise ValueError(f"specaug_conf vtlp_prob={vtlp_prob}: expected 0 <= vtlp_prob <= 1")
        nyquist = fs / 2.0
        fmax = nyquist if fmax is None else float(fmax)
        if not 0.0 < vtlp_f_hi < nyquist:
            raise ValueError(f"specaug_conf vtlp_f_hi={vtlp_f_hi}: expected 0 < vtlp_f_hi < fs/2 = {nyquist}")
        self.alpha_range = (low, high)
        self.prob = float(vtlp_prob)
        self.f_hi = float(vtlp_f_hi)
        self.nyquist = nyquist
        self.n_mels = int(n_mels)
        # Centres of librosa's mel filters (LogMel's), in Hz and in mel.
        edges_hz = librosa.mel_frequencies(n_mels=self.n_mels + 2, fmin=fmin, fmax=fmax)
        centres_hz = edges_hz[1:-1]
        self.register_buffer("centres_hz", torch.tensor(centres_hz, dtype=torch.float64), persistent=False)
        self.register_buffer(
            "centres_mel", torch.tensor(librosa.hz_to_mel(centres_hz), dtype=torch.float64), persistent=False
        )
        # SpecAug's switches default to on; with all three off only VTLP is applied.
        switches = ("apply_time_warp", "apply_freq_mask", "apply_time_mask")
        self.specaug = SpecAug(**specaug_conf) if any(specaug_conf.get(k, True) for k in switches) else None

    def positions(self, alpha: torch.Tensor) -> torch.Tensor:
        """Fractional mel-bin index (``(B, n_mels)``) that each output bin reads for ``alpha``."""
        target_hz = warp_frequencies(self.centres_hz, alpha.to(torch.float64), self.f_hi, self.nyquist)
        target_mel = torch.from_numpy(np.asarray(librosa.hz_to_mel(target_hz.cpu().numpy()))).to(self.centres_mel)
        # The centres are uniform in mel: the index is linear in mel.
        first, step = self.centres_mel[0], self.centres_mel[1] - self.centres_mel[0]
        return ((target_mel - first) / step).clamp(0.0, self.n_mels - 1.0)

    def warp(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``x`` (``(B, T, n_mels)`` log-mel) warped per utterance by ``alpha`` (``(B,)``)."""
        if x.size(-1) != self.n_mels:
            raise ValueError(
                f"vtlp_specaug: features have {x.size(-1)} bins, specaug_conf n_mels={self.n_mels}: "
                "set specaug_conf n_mels (and fs, fmin, fmax) to the frontend_conf's"
            )
        pos = self.positions(alpha).to(x.dtype)  # (B, F)
        lo = pos.floor().long().clamp(max=self.n_mels - 2)
        frac = (pos - lo.to(pos.dtype))[:, None, :]
        index = lo[:, None, :].expand(-1, x.size(1), -1)
        left = torch.gather(x, 2, index)
        right = torch.gather(x, 2, index + 1)
        return left + frac * (right - left)

    def forward(
        self, x: torch.Tensor, x_lengths: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        low, high = self.alpha_range
        batch = x.size(0)
        alpha = torch.empty(batch, dtype=torch.float64).uniform_(low, high)
        if self.prob < 1.0:
            alpha = torch.where(torch.rand(batch, dtype=torch.float64) < self.prob, alpha, torch.ones_like(alpha))
        x = self.warp(x, alpha)
        if self.specaug is not None:
            x, x_lengths = self.specaug(x, x_lengths)
        return x, x_lengths
