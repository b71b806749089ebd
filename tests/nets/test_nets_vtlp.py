"""VTLP on the mel filterbank (espnet_omni.nets.vtlp): the warp, its direction, ESPnet's use of it."""

import librosa
import numpy as np
import pytest
import torch

from espnet_omni.nets.vtlp import VTLPSpecAug, warp_frequencies

ONLY_VTLP = dict(apply_time_warp=False, apply_freq_mask=False, apply_time_mask=False)


def test_warp_map_is_the_papers_piecewise_linear_map():
    f = torch.linspace(0.0, 8000.0, 161, dtype=torch.float64)
    for alpha in (0.85, 0.9, 1.0, 1.1, 1.15):
        g = warp_frequencies(f, torch.tensor([alpha], dtype=torch.float64), 4800.0, 8000.0)[0]
        assert float(g[0]) == 0.0 and float(g[-1]) == pytest.approx(8000.0)
        assert torch.all(g[1:] > g[:-1])  # monotone
        bend = 4800.0 * min(alpha, 1.0) / alpha
        low = f <= bend
        assert torch.allclose(g[low], alpha * f[low])
        # continuous at the bend
        gb = warp_frequencies(torch.tensor([bend], dtype=torch.float64), torch.tensor([alpha], dtype=torch.float64), 4800.0, 8000.0)
        assert float(gb[0, 0]) == pytest.approx(4800.0 * min(alpha, 1.0))


def test_alpha_one_is_identity_and_a_peak_moves_the_right_way():
    aug = VTLPSpecAug(n_mels=40, **ONLY_VTLP)
    x = torch.randn(2, 30, 40)
    assert torch.allclose(aug.warp(x, torch.ones(2, dtype=torch.float64)), x, atol=1e-5)
    # A formant at 1 kHz: alpha > 1 reads higher frequencies, so the content moves DOWN.
    centres = librosa.mel_frequencies(n_mels=42, fmin=0.0, fmax=8000.0)[1:-1]
    k = int(np.argmin(np.abs(centres - 1000.0)))
    peak = torch.zeros(2, 1, 40)
    peak[:, :, k] = 1.0
    out = aug.warp(peak, torch.tensor([1.15, 0.85], dtype=torch.float64))
    down, up = int(out[0, 0].argmax()), int(out[1, 0].argmax())
    assert down < k < up
    # Where it lands: the bin whose centre * alpha is closest to 1 kHz.
    assert down == int(np.argmin(np.abs(centres * 1.15 - centres[k])))


def test_each_utterance_gets_its_own_factor_within_the_range():
    torch.manual_seed(0)
    aug = VTLPSpecAug(n_mels=40, vtlp_alpha_range=(0.9, 1.1), **ONLY_VTLP)
    x = torch.randn(1, 20, 40).expand(6, -1, -1).contiguous()
    out, _ = aug(x, torch.full((6,), 20))
    # Six copies of one utterance come out six different ways.
    flat = out.reshape(6, -1)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(6) for j in range(i + 1, 6))
    alpha = torch.empty(1000, dtype=torch.float64).uniform_(0.9, 1.1)
    pos = aug.positions(alpha)
    assert pos.min() >= 0 and pos.max() <= 39


def test_specaug_follows_and_probability_zero_is_specaug_alone():
    torch.manual_seed(1)
    aug = VTLPSpecAug(n_mels=40, vtlp_prob=0.0, apply_time_warp=False, freq_mask_width_range=[5, 6],
                      num_freq_mask=1, apply_time_mask=False)
    x = torch.rand(2, 50, 40) + 1.0
    out, lengths = aug(x, torch.tensor([50, 40]))
    zero_bins = (out == 0).all(dim=1)  # (B, F): masked bands
    assert zero_bins.sum(dim=1).tolist() == [5, 5]
    kept = ~zero_bins
    assert torch.allclose(out[0][:, kept[0]], x[0][:, kept[0]])  # unwarped where not masked


def test_bad_configuration_names_the_key():
    with pytest.raises(ValueError, match="vtlp_alpha_range"):
        VTLPSpecAug(vtlp_alpha_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="vtlp_f_hi"):
        VTLPSpecAug(vtlp_f_hi=9000.0)
    aug = VTLPSpecAug(n_mels=80, **ONLY_VTLP)
    with pytest.raises(ValueError, match="n_mels=80"):
        aug(torch.zeros(1, 10, 40), torch.tensor([10]))


def test_offered_to_espnet_as_specaug_vtlp_specaug():
    from espnet_omni.tasks.asr import ASR_CHOICES
    from espnet_omni.tasks.ssl import SSL_CHOICES

    assert ASR_CHOICES.choices("specaug").get_class("vtlp_specaug") is VTLPSpecAug
    assert SSL_CHOICES.choices("specaug").get_class("vtlp_specaug") is VTLPSpecAug
