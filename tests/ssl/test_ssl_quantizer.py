"""The Gumbel-softmax product quantizer of wav2vec 2.0."""

import math

import pytest
import torch

from espnet_omni.ssl.quantizer import GumbelProductQuantizer, QuantizerOutput

G, V, D_IN, D_Q = 3, 5, 12, 9


def _quantizer(**kw) -> GumbelProductQuantizer:
    torch.manual_seed(0)
    args = dict(input_dim=D_IN, groups=G, entries=V, codebook_dim=D_Q)
    args.update(kw)
    return GumbelProductQuantizer(**args)


def _chosen_rows(q: GumbelProductQuantizer, quantized: torch.Tensor) -> torch.Tensor:
    """(N, G) index of the codebook row of each group segment; asserts exact match."""
    d = q.entry_dim
    book = q.codebook.detach().view(q.groups, q.entries, d)
    seg = quantized.detach().view(-1, q.groups, d)
    dist = (seg.unsqueeze(2) - book.unsqueeze(0)).abs().amax(-1)  # (N, G, V)
    assert torch.all((dist < 1e-6).sum(-1) == 1), "each segment must equal one row"
    return dist.argmin(-1)


def test_output_shapes_and_types():
    q = _quantizer()
    out = q(torch.randn(7, D_IN))
    assert isinstance(out, QuantizerOutput)
    assert out.quantized.shape == (7, D_Q)
    for v in (out.diversity_loss, out.code_perplexity, out.prob_perplexity):
        assert v.dim() == 0
    assert isinstance(out.temperature, float) and out.temperature == 2.0
    assert q.codebook.shape == (G * V, D_Q // G)
    assert q.weight_proj.out_features == G * V


@pytest.mark.parametrize("training", [True, False])
def test_one_codebook_row_per_group(training):
    q = _quantizer().train(training)
    x = torch.randn(20, D_IN)
    rows = _chosen_rows(q, q(x).quantized)
    if not training:  # eval mode picks the argmax of the logits
        logits = q.weight_proj(x).view(20, G, V)
        assert torch.equal(rows, logits.argmax(-1))


def test_straight_through_gradients():
    q = _quantizer().train()
    x = torch.randn(30, D_IN, requires_grad=True)
    out = q(x)
    (out.quantized * torch.randn_like(out.quantized)).sum().backward()
    for name, grad in [("proj", q.weight_proj.weight.grad), ("codebook", q.codebook.grad),
                       ("input", x.grad)]:
        assert grad is not None and grad.abs().sum() > 0, name
    # The diversity loss alone trains the projection too.
    q.zero_grad()
    q(torch.randn(30, D_IN)).diversity_loss.backward()
    assert q.weight_proj.weight.grad.abs().sum() > 0


def test_eval_is_deterministic_and_train_is_stochastic():
    q = _quantizer()
    x = torch.randn(50, D_IN)
    q.eval()
    torch.manual_seed(1)
    a = q(x).quantized
    torch.manual_seed(2)
    assert torch.equal(a, q(x).quantized)
    q.train()
    q.set_num_updates(0)
    torch.manual_seed(1)
    b = q(x).quantized
    torch.manual_seed(2)
    assert not torch.equal(b, q(x).quantized)


def test_temperature_schedule():
    q = _quantizer(temperature=(2.0, 0.5, 0.9))
    assert q.temperature == 2.0
    q.set_num_updates(10)
    assert math.isclose(q.temperature, 2.0 * 0.9 ** 10, rel_tol=1e-12)
    q.set_num_updates(10_000_000)
    assert q.temperature == 0.5
    q.set_num_updates(torch.tensor([3]))  # ESPnet passes its global_step buffer
    assert math.isclose(q.temperature, 2.0 * 0.9 ** 3, rel_tol=1e-12)
    assert q(torch.randn(2, D_IN)).temperature == q.temperature
    const = _quantizer(temperature=(1.0, 1.0, 1.0))
    const.set_num_updates(12345)
    assert const.temperature == 1.0
    with pytest.raises(ValueError, match="step"):
        q.set_num_updates(-1)


def test_diversity_loss_bounds():
    q = _quantizer().eval()
    x = torch.randn(40, D_IN)
    with torch.no_grad():
        q.weight_proj.weight.zero_()
        q.weight_proj.bias.zero_()
    out = q(x)  # uniform softmax: perplexity G * V, diversity 0
    assert out.prob_perplexity.item() == pytest.approx(G * V, rel=1e-5)
    assert out.diversity_loss.item() == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():  # every group always picks entry 0 with probability ~1
        q.weight_proj.bias.view(G, V)[:, 0] = 100.0
    out = q(x)
    assert out.prob_perplexity.item() == pytest.approx(G, rel=1e-4)
    assert out.code_perplexity.item() == pytest.approx(G, rel=1e-4)
    assert out.diversity_loss.item() == pytest.approx((G * V - G) / (G * V), rel=1e-4)
    assert out.diversity_loss.item() == pytest.approx(1 - 1 / V, rel=1e-4)
    torch.manual_seed(3)
    for _ in range(5):
        d = _quantizer()(torch.randn(16, D_IN)).diversity_loss.item()
        assert 0.0 <= d < 1.0


def test_code_perplexity_counts_used_codes():
    q = _quantizer().eval()
    with torch.no_grad():
        q.weight_proj.weight.zero_()
        q.weight_proj.weight.view(G, V, D_IN)[:, :, 0] = torch.arange(V).float()
        q.weight_proj.bias.zero_()
    # Half the inputs pick the last entry of every group, half the first one.
    x = torch.zeros(10, D_IN)
    x[:5, 0] = 1.0
    x[5:, 0] = -1.0
    assert q(x).code_perplexity.item() == pytest.approx(2 * G, rel=1e-5)


def test_empty_or_misshaped_input_raises():
    q = _quantizer()
    with pytest.raises(ValueError, match="N=0"):
        q(torch.zeros(0, D_IN))
    with pytest.raises(ValueError, match="shape"):
        q(torch.zeros(4, D_IN + 1))
    with pytest.raises(ValueError, match="shape"):
        q(torch.zeros(2, 4, D_IN))


@pytest.mark.parametrize("kwargs,name", [
    (dict(input_dim=0), "input_dim"),
    (dict(groups=0), "groups"),
    (dict(groups=2.0), "groups"),
    (dict(entries=-3), "entries"),
    (dict(codebook_dim=0), "codebook_dim"),
    (dict(codebook_dim=10, groups=3), "codebook_dim"),
    (dict(temperature=(0.5, 2.0, 0.9)), "start >= end"),
    (dict(temperature=(2.0, 0.0, 0.9)), "end > 0"),
    (dict(temperature=(2.0, 0.5, 0.0)), "decay"),
    (dict(temperature=(2.0, 0.5, 1.5)), "decay"),
    (dict(temperature=(2.0, 0.5)), "temperature"),
    (dict(temperature=(2.0, float("nan"), 0.9)), "temperature"),
])
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _quantizer(**kwargs)
