"""The wav2vec 2.0 loss: negative sampling, logits, the loss against a naive
reference, argument checks and a tiny optimisation run."""

import math

import pytest
import torch
import torch.nn.functional as F

import espnet_omni.ssl.wav2vec2 as w2v
from espnet2.ssl.loss.abs_loss import AbsSSLLoss
from espnet_omni.ssl.wav2vec2 import Wav2Vec2Loss, contrastive_logits, sample_negatives

STAT_KEYS = {"w2v_contrastive", "w2v_diversity", "w2v_feature_pen", "w2v_acc",
             "w2v_code_ppl", "w2v_prob_ppl", "w2v_temp", "w2v_masked_frac"}


# ---------------------------------------------------------------- sample_negatives
def test_sample_negatives_stays_in_utterance_and_masked_frames():
    gen = torch.Generator().manual_seed(0)
    b, t, k = 4, 30, 50
    mask = torch.rand(b, t, generator=gen) < 0.4
    mask[3] = False  # an utterance without masked frames adds no rows
    idx, valid = sample_negatives(mask, k, generator=gen)
    own = mask.reshape(-1).nonzero().squeeze(1)  # row-major order
    assert idx.shape == (own.numel(), k) and idx.dtype == torch.long
    assert valid.shape == (own.numel(),) and bool(valid.all())
    assert not bool((idx == own.unsqueeze(1)).any())  # never itself
    assert bool((idx // t == (own // t).unsqueeze(1)).all())  # same utterance
    assert bool(mask.reshape(-1)[idx].all())  # only masked frames


def test_sample_negatives_more_draws_than_frames_and_uniform():
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[0, [1, 4, 7, 8]] = True
    mask[1, [0, 9]] = True
    gen = torch.Generator().manual_seed(1)
    idx, valid = sample_negatives(mask, 3000, generator=gen)  # K >> masked frames
    assert bool(valid.all())
    # Frame (0, 1) draws uniformly from the 3 others of utterance 0.
    counts = torch.bincount(idx[0], minlength=20).float() / 3000
    assert counts[[4, 7, 8]].tolist() == pytest.approx([1 / 3] * 3, abs=0.04)
    assert counts.sum().item() == pytest.approx(1.0)
    assert bool((idx[4] == 19).all()) and bool((idx[5] == 10).all())  # only one choice


def test_sample_negatives_marks_lonely_frames_invalid():
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, [0, 2, 5]] = True
    mask[1, 3] = True  # a single masked frame: no distractor possible
    mask[2, [1, 2]] = True
    idx, valid = sample_negatives(mask, 4)
    assert valid.tolist() == [True, True, True, False, True, True]
    assert idx.shape == (6, 4)


def test_sample_negatives_is_reproducible_and_checks_arguments():
    mask = torch.rand(3, 40) < 0.5
    a, _ = sample_negatives(mask, 7, generator=torch.Generator().manual_seed(5))
    b, _ = sample_negatives(mask, 7, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    idx, valid = sample_negatives(torch.zeros(2, 5, dtype=torch.bool), 3)
    assert idx.shape == (0, 3) and valid.shape == (0,)
    with pytest.raises(ValueError, match="num_negatives"):
        sample_negatives(mask, 0)
    with pytest.raises(ValueError, match="mask_m"):
        sample_negatives(mask.view(-1), 3)


# ---------------------------------------------------------------- contrastive_logits
def _naive_logits(c, pos, neg, temp):
    m, k = neg.shape[:2]
    out = torch.empty(m, k + 1, dtype=torch.float64)
    for i in range(m):
        for j in range(k + 1):
            target = pos[i] if j == 0 else neg[i, j - 1]
            if j > 0 and torch.equal(target, pos[i]):
                out[i, j] = -math.inf
                continue
            cos = sum(float(a) * float(b) for a, b in zip(c[i], target))
            cos /= max(float(c[i].norm()), 1e-8) * max(float(target.norm()), 1e-8)
            out[i, j] = cos / temp
    return out


def test_contrastive_logits_match_naive_reference():
    torch.manual_seed(0)
    c, pos, neg = torch.randn(6, 5), torch.randn(6, 5), torch.randn(6, 4, 5)
    neg[2, 1] = pos[2]  # identical to its positive -> -inf
    neg[3, 0] = pos[3] + 1e-3  # nearly identical is a normal distractor
    logits = contrastive_logits(c, pos, neg, 0.1)
    assert logits.shape == (6, 5) and logits.dtype == torch.float32
    ref = _naive_logits(c, pos, neg, 0.1)
    assert logits[2, 2].item() == -math.inf
    assert int(torch.isinf(logits).sum()) == 1
    fin = torch.isfinite(ref)
    assert torch.allclose(logits.double()[fin], ref[fin], atol=1e-5)


def test_contrastive_logits_checks_arguments():
    c = torch.randn(3, 4)
    with pytest.raises(ValueError, match="temperature"):
        contrastive_logits(c, c, c.unsqueeze(1), 0.0)
    with pytest.raises(ValueError, match="negatives"):
        contrastive_logits(c, c, c, 0.1)


# ---------------------------------------------------------------- the loss
def _batch(seed=0, b=3, t=12, d_enc=10, d_feat=6):
    gen = torch.Generator().manual_seed(seed)
    context = torch.randn(b, t, d_enc, generator=gen, requires_grad=True)
    feats = torch.randn(b, t, d_feat, generator=gen, requires_grad=True)
    lengths = torch.tensor([t, t - 3, t - 5])
    mask = torch.rand(b, t, generator=gen) < 0.5
    mask[1, t - 3:] = True  # masked pad frames must be ignored
    mask[2] = False
    mask[2, 1] = True  # one masked frame only: no distractor, ignored
    return context, feats, lengths, mask


def _loss(**kw):
    torch.manual_seed(0)
    args = dict(encoder_output_size=10, feature_dim=6, final_dim=4, num_negatives=5,
                codebook_groups=2, codebook_entries=3, codebook_dim=4)
    args.update(kw)
    return Wav2Vec2Loss(**args)


def _naive_reference(loss_fn, context, feats, lengths, mask, neg_index):
    """Loop over frames; quantizer in eval mode (deterministic)."""
    b, t, _ = context.shape
    frames = [(i, j) for i in range(b) for j in range(t) if mask[i, j] and j < lengths[i]]
    per = {}
    for i, j in frames:
        x = feats[i, j]
        if loss_fn.normalize_features:  # layer norm without weights, written out
            x = (x - x.mean()) / torch.sqrt(((x - x.mean()) ** 2).mean() + 1e-5)
        out = loss_fn.quantizer(x.unsqueeze(0))
        per[(i, j)] = dict(y=loss_fn.project_q(out.quantized)[0],
                           c=loss_fn.final_proj(context[i, j]),
                           p=torch.softmax(loss_fn.quantizer.weight_proj(x).view(
                               loss_fn.quantizer.groups, -1), -1))
    ces, correct = [], []
    for row, (i, j) in enumerate(frames):
        if sum(1 for f in frames if f[0] == i) < 2:
            continue
        y, cvec = per[(i, j)]["y"], per[(i, j)]["c"]
        negs = torch.stack([per[(int(n) // t, int(n) % t)]["y"] for n in neg_index[row]])
        lg = _naive_logits(cvec.detach()[None], y.detach()[None], negs.detach()[None],
                           loss_fn.logit_temperature)
        ces.append(float(torch.logsumexp(lg[0], 0) - lg[0, 0]))
        correct.append(float(lg[0, 0] > lg[0, 1:].max()))
    avg = torch.stack([per[f]["p"] for f in frames]).mean(0).detach().double()
    ppl = float(torch.exp(-(avg * torch.log(avg + 1e-7)).sum(-1)).sum())
    n_codes = avg.numel()
    diversity = (n_codes - ppl) / n_codes
    sq = [float(feats[i, j].detach().double().pow(2).mean())
          for i in range(b) for j in range(lengths[i])]
    return dict(contrastive=sum(ces) / len(ces), diversity=diversity, pen=sum(sq) / len(sq),
                acc=sum(correct) / len(correct), n_valid=len(ces),
                nonpad=int(lengths.sum()), ppl=ppl)


@pytest.mark.parametrize("normalize_features", [True, False])
def test_loss_matches_naive_reference(monkeypatch, normalize_features):
    loss_fn = _loss(diversity_weight=0.3, feature_penalty_weight=2.0,
                    normalize_features=normalize_features).eval()
    context, feats, lengths, mask = _batch()
    recorded = {}

    def seeded(mask_m, k, generator=None):
        idx, valid = sample_negatives(mask_m, k, torch.Generator().manual_seed(7))
        recorded["idx"], recorded["valid"] = idx, valid
        return idx, valid

    monkeypatch.setattr(w2v, "sample_negatives", seeded)
    loss, stats = loss_fn([context * 0, context], lengths, feats, {"mask_m": mask})
    ref = _naive_reference(loss_fn, context, feats, lengths, mask, recorded["idx"])
    assert int(recorded["valid"].sum()) == ref["n_valid"] < len(recorded["valid"])

    assert float(stats["w2v_contrastive"]) == pytest.approx(ref["contrastive"], rel=1e-4)
    assert float(stats["w2v_diversity"]) == pytest.approx(ref["diversity"], rel=1e-4, abs=1e-6)
    assert float(stats["w2v_feature_pen"]) == pytest.approx(ref["pen"], rel=1e-5)
    assert float(stats["w2v_acc"]) == pytest.approx(ref["acc"])
    assert float(stats["w2v_prob_ppl"]) == pytest.approx(ref["ppl"], rel=1e-4)
    assert float(stats["w2v_masked_frac"]) == pytest.approx(ref["n_valid"] / ref["nonpad"])
    expected = ref["contrastive"] + 0.3 * ref["diversity"] + 2.0 * ref["pen"]
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_loss_interface_stats_and_gradients():
    loss_fn = _loss()
    assert isinstance(loss_fn, AbsSSLLoss)
    assert loss_fn.util_attributes == ["mask"]
    assert loss_fn.required_inputs == ["encoder_output", "encoder_output_lengths",
                                       "features", "mask_info"]
    context, feats, lengths, mask = _batch()
    loss, stats = loss_fn([context], lengths, feats, {"mask_m": mask, "mask_u": ~mask})
    assert loss.dim() == 0 and loss.requires_grad
    assert set(stats) == STAT_KEYS
    for v in stats.values():
        assert isinstance(v, float) or (v.dim() == 0 and not v.requires_grad)
    loss.backward()
    for name, p in [("context", context), ("features", feats),
                    ("final_proj", loss_fn.final_proj.weight),
                    ("project_q", loss_fn.project_q.weight),
                    ("codebook", loss_fn.quantizer.codebook),
                    ("quantizer proj", loss_fn.quantizer.weight_proj.weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert 0.0 <= float(stats["w2v_acc"]) <= 1.0


def test_step_sets_quantizer_temperature():
    loss_fn = _loss(quantizer_temperature=(2.0, 0.5, 0.5))
    loss_fn.step(torch.tensor([1]))
    assert loss_fn.quantizer.temperature == 1.0
    loss_fn.step(100)
    assert loss_fn.quantizer.temperature == 0.5
    context, feats, lengths, mask = _batch()
    _, stats = loss_fn([context], lengths, feats, {"mask_m": mask})
    assert stats["w2v_temp"] == 0.5


def test_zero_weights_drop_terms():
    loss_fn = _loss(diversity_weight=0.0, feature_penalty_weight=0.0)
    context, feats, lengths, mask = _batch()
    loss, stats = loss_fn([context], lengths, feats, {"mask_m": mask})
    assert loss.item() == pytest.approx(float(stats["w2v_contrastive"]))


def test_shape_mismatch_and_no_valid_frame_raise():
    loss_fn = _loss()
    context, feats, lengths, mask = _batch()
    with pytest.raises(ValueError, match="shape|features"):
        loss_fn([context], lengths, feats[:, :-1], {"mask_m": mask})
    with pytest.raises(ValueError, match="mask_m"):
        loss_fn([context], lengths, feats, {"mask_m": mask[:, :-1]})
    with pytest.raises(ValueError, match="context"):
        loss_fn([context[..., :-1]], lengths, feats, {"mask_m": mask})
    with pytest.raises(ValueError, match="mask_m"):
        loss_fn([context], lengths, feats, {"mask_m": None})
    lonely = torch.zeros_like(mask)
    lonely[:, 0] = True  # one masked frame per utterance
    lonely[1, 11] = True  # a second one, but beyond the length: ignored
    with pytest.raises(ValueError, match="at least 2 masked frames"):
        loss_fn([context], lengths, feats, {"mask_m": lonely})


def test_non_finite_input_raises_floating_point_error():
    loss_fn = _loss()
    context, feats, lengths, mask = _batch()
    bad = context.detach().clone()
    bad[mask & (torch.arange(12) < lengths.unsqueeze(1))] = float("nan")
    with pytest.raises(FloatingPointError, match="contrastive") as err:
        loss_fn([bad], lengths, feats, {"mask_m": mask})
    assert "diversity" not in str(err.value) and "feature_penalty" not in str(err.value)
    bad_feats = feats.detach().clone()
    bad_feats[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="feature_penalty"):
        _loss(feature_penalty_weight=1.0)([context], lengths, bad_feats, {"mask_m": mask})


@pytest.mark.parametrize("kwargs,name", [
    (dict(encoder_output_size=0), "encoder_output_size"),
    (dict(feature_dim=-1), "feature_dim"),
    (dict(final_dim=0), "final_dim"),
    (dict(num_negatives=0), "num_negatives"),
    (dict(num_negatives=2.5), "num_negatives"),
    (dict(logit_temperature=0.0), "logit_temperature"),
    (dict(logit_temperature=float("inf")), "logit_temperature"),
    (dict(codebook_groups=0), "codebook_groups"),
    (dict(codebook_entries=0), "codebook_entries"),
    (dict(codebook_dim=5), "codebook_dim"),
    (dict(quantizer_temperature=(0.1, 0.5, 0.9)), "quantizer_temperature"),
    (dict(quantizer_temperature=(2.0, 0.5, 2.0)), "quantizer_temperature"),
    (dict(diversity_weight=-0.1), "diversity_weight"),
    (dict(feature_penalty_weight=float("nan")), "feature_penalty_weight"),
    (dict(normalize_features="yes"), "normalize_features"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _loss(**kwargs)


@pytest.mark.parametrize("normalize_features", [True, False])
def test_targets_do_not_collapse_with_the_feature_scale(normalize_features):
    """The collapse seen with the paper's feature penalty and no LayerNorm:
    features shrunk toward 0 make the quantizer's softmax uniform (the
    diversity term is then perfect: prob perplexity = G * V) whatever the
    input. With ``normalize_features`` the scale does not matter."""
    loss_fn = _loss(normalize_features=normalize_features).eval()
    context, feats, lengths, mask = _batch()
    ppl = []
    for scale in (1.0, 1e-2):  # (LayerNorm's eps, 1e-5, bounds how small)
        torch.manual_seed(3)
        _, stats = loss_fn([context], lengths, feats.detach() * scale, {"mask_m": mask})
        ppl.append(float(stats["w2v_prob_ppl"]))
    n_codes = loss_fn.quantizer.groups * loss_fn.quantizer.entries
    assert ppl[0] < n_codes - 0.2  # the batch uses the codes unevenly
    if normalize_features:  # shrunk features: about the same use of the codes
        assert abs(ppl[1] - ppl[0]) < 0.1 * (n_codes - ppl[0])
    else:  # shrunk features: uniform softmax, whatever the input
        assert ppl[1] > n_codes - 0.01


def test_defaults_follow_encoder_and_final_dim():
    loss_fn = Wav2Vec2Loss(encoder_output_size=24, final_dim=8, codebook_entries=4)
    assert loss_fn.quantizer.input_dim == 24
    assert loss_fn.quantizer.codebook_dim == 8
    assert loss_fn.project_q.in_features == 8 and loss_fn.final_proj.out_features == 8


# ---------------------------------------------------------------- optimisation
class _TinyEncoder(torch.nn.Module):
    """Masked frames -> learned embedding, then a temporal convolution."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.mask_emb = torch.nn.Parameter(torch.zeros(d_in))
        self.conv = torch.nn.Conv1d(d_in, d_out, kernel_size=5, padding=2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.where(mask.unsqueeze(-1), self.mask_emb.expand_as(x), x)
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


def test_tiny_optimisation_learns():
    seed = 0  # seeds 0-9 all give last/first < 0.73 and accuracy > 0.45
    torch.manual_seed(seed)
    b, t, d, k = 4, 48, 8, 10
    # Smooth features: a masked frame is predictable from its neighbours.
    anchors = torch.randn(b, d, t // 4 + 1)
    feats = F.interpolate(anchors, size=t, mode="linear", align_corners=True).transpose(1, 2)
    lengths = torch.tensor([t, t, t - 8, t - 12])
    encoder = _TinyEncoder(d, 32)
    loss_fn = Wav2Vec2Loss(encoder_output_size=32, feature_dim=d, final_dim=16,
                           num_negatives=k, codebook_groups=2, codebook_entries=16,
                           quantizer_temperature=(1.0, 0.5, 0.95),
                           feature_penalty_weight=0.0)
    params = list(encoder.parameters()) + list(loss_fn.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for step in range(40):
        mask = torch.rand(b, t, generator=gen) < 0.3
        loss_fn.step(step)
        loss, stats = loss_fn([encoder(feats, mask)], lengths, feats, {"mask_m": mask})
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append((float(stats["w2v_contrastive"]), float(stats["w2v_acc"])))
    first = sum(c for c, _ in history[:5]) / 5
    last = sum(c for c, _ in history[-5:]) / 5
    acc = sum(a for _, a in history[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    assert acc > 3 / (k + 1), acc
