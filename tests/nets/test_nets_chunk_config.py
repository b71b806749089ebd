"""Streaming mode: config validation, masks, causal conv, encoder modes."""


import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.legacy.nets.pytorch_backend.conformer.convolution import ConvolutionModule

from espnet_omni.nets.dual_mode_conv import DualModeConvolutionModule
from espnet_omni.nets.omni_conformer import OmniConformerEncoder
from espnet_omni.nets.chunk_config import (
    StreamingConfig,
    algorithmic_latency,
    causal_conv_kernel_mask,
    chunk_attention_mask,
    encoder_right_context,
)
from espnet_omni.sparsity.subnet import SubnetConfig

TINY = dict(input_size=20, output_size=16, attention_heads=2, linear_units=32,
            num_blocks=2, cnn_module_kernel=5, rel_pos_type="latest", macaron_style=True)


@pytest.mark.parametrize("kwargs, key", [
    (dict(chunk_size=0), "chunk_size"),
    (dict(chunk_size=-3), "chunk_size"),
    (dict(chunk_size=4, lookahead=5), "lookahead"),
    (dict(chunk_size=4, lookahead=-1), "lookahead"),
    (dict(left_chunks=-2), "left_chunks"),
    (dict(lookahead_layers=0), "lookahead_layers"),
])
def test_bad_config_raises_naming_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        StreamingConfig(**kwargs)


def test_config_types_and_dict_round_trip():
    with pytest.raises(TypeError, match="chunk_size"):
        StreamingConfig(chunk_size=4.0)
    with pytest.raises(ValueError, match="unknown streaming key.*chunk"):
        StreamingConfig.from_dict({"chunk": 4})
    cfg = StreamingConfig(8, 2, 3, 1)
    assert StreamingConfig.from_dict(cfg.to_dict()) == cfg
    assert StreamingConfig.from_dict(None) == StreamingConfig()


@pytest.mark.parametrize("cfg", [
    StreamingConfig(1), StreamingConfig(3), StreamingConfig(3, 0), StreamingConfig(3, 1, 2),
    StreamingConfig(4, 2, 4), StreamingConfig(5, -1, 1),
])
def test_chunk_mask_matches_the_definition(cfg):
    size = 17
    m = chunk_attention_mask(size, cfg)
    C, L, R = cfg.chunk_size, cfg.left_chunks, cfg.lookahead
    for t in range(size):
        c = t // C
        for u in range(size):
            want = u < (c + 1) * C + R and (L < 0 or u >= (c - L) * C)
            assert bool(m[t, u]) == want, (t, u)
    assert m.diagonal().all()


def test_causal_kernel_mask_errors():
    for k in (0, 2, -1):
        with pytest.raises(ValueError, match="kernel_size"):
            causal_conv_kernel_mask(k)


def test_latency_parts():
    lat = algorithmic_latency(StreamingConfig(16, lookahead=2), 4, 16000, 160, 400, 4, 7)
    assert lat.chunk_ms == 640.0
    assert lat.lookahead_ms == (3 * 16 + 2) * 40.0  # look-ahead cascades over 4 blocks
    assert lat.frontend_ms == pytest.approx(2 * 10.0 + 12.5)  # 2 frames + n_fft/2
    one = StreamingConfig(16, lookahead=2, lookahead_layers=1)
    assert encoder_right_context(one, 4) == 2


# ------------------------------------------------------------------ encoder
def _encoder(**kw):
    torch.manual_seed(0)
    enc = OmniConformerEncoder(**{**TINY, **kw}).eval()
    for m in enc.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return enc


def test_modes_share_weights_and_full_stays_stock():
    torch.manual_seed(1)
    stock = ConformerEncoder(**TINY).eval()
    omni = OmniConformerEncoder(**TINY, streaming={"chunk_size": 4}).eval()
    omni.load_state_dict(stock.state_dict(), strict=True)
    assert list(omni.state_dict()) == list(stock.state_dict())
    assert type(omni.encoders[0].conv_module) is ConvolutionModule  # until streaming
    xs = torch.randn(2, 60, 20)
    ilens = torch.tensor([60, 41])
    ref = stock(xs, ilens)[0]
    assert omni.get_active_mode().name == "full"
    mode = omni.set_active_mode("streaming")
    assert mode.streaming == StreamingConfig(4) == omni.get_active_mode().streaming
    assert isinstance(omni.encoders[0].conv_module, DualModeConvolutionModule)
    out, olens, _ = omni(xs, ilens)
    assert torch.equal(olens, stock(xs, ilens)[1])
    assert not torch.allclose(out, ref)
    omni.set_active_mode("full")
    assert torch.equal(omni(xs, ilens)[0], ref)  # bitwise, after a streaming pass


def test_set_active_mode_errors():
    enc = _encoder()
    with pytest.raises(ValueError, match="mode='online'"):
        enc.set_active_mode("online")
    with pytest.raises(ValueError, match="full mode"):
        enc.set_active_mode("full", StreamingConfig())
    with pytest.raises(TypeError, match="StreamingConfig"):
        enc.set_active_mode("streaming", {"chunk_size": 4})
    with pytest.raises(ValueError, match="chunk_size"):
        OmniConformerEncoder(**TINY, streaming={"chunk_size": 0})
    inter = OmniConformerEncoder(**{**TINY, "num_blocks": 3}, interctc_layer_idx=[1])
    with pytest.raises(NotImplementedError, match="interctc"):
        inter.set_active_mode("streaming")


def _unchanged_prefix(enc, cfg, first_feat):
    """Encoder frames that must not move when feature frames >= first_feat do."""
    stride, field = 4, 7
    first_emb = -(-(first_feat - field + 1) // stride)  # first encoder frame touched
    right = encoder_right_context(cfg, len(enc.encoders))
    C = cfg.chunk_size
    return [t for t in range(200) if (t // C + 1) * C - 1 + right < first_emb]


@pytest.mark.parametrize("cfg", [
    StreamingConfig(4), StreamingConfig(3, left_chunks=1), StreamingConfig(4, lookahead=2),
    StreamingConfig(4, lookahead=3, lookahead_layers=1),
], ids=str)
def test_streaming_has_no_access_to_the_future(cfg):
    enc = _encoder()
    enc.set_active_mode("streaming", cfg)
    xs = torch.randn(1, 100, 20)
    ilens = torch.tensor([100])
    first_feat = 50
    moved = xs.clone()
    moved[:, first_feat:] += torch.randn(1, 100 - first_feat, 20)
    a, b = enc(xs, ilens)[0][0], enc(moved, ilens)[0][0]
    keep = _unchanged_prefix(enc, cfg, first_feat)
    assert keep, "the test must check something"
    assert torch.equal(a[keep], b[keep])
    assert not torch.allclose(a[len(keep)], b[len(keep)])  # the next frame does move
    enc.set_active_mode("full")  # full context: every frame moves
    assert not torch.allclose(enc(xs, ilens)[0][0, 0], enc(moved, ilens)[0][0, 0])


def test_causal_conv_reads_no_future():
    enc = _encoder()
    conv = enc.dual_mode_convs()[0]
    x = torch.randn(1, 30, 16)
    moved = x.clone()
    moved[:, 20:] += 1.0
    conv.causal = True
    a, b = conv(x), conv(moved)
    assert torch.equal(a[:, :20], b[:, :20]) and not torch.allclose(a[:, 20], b[:, 20])
    conv.causal = False  # symmetric kernel: frame 17 sees frame 19 (P = 2)
    assert not torch.allclose(conv(x)[:, 18], conv(moved)[:, 18])


def test_padded_batch_equals_single_utterances():
    enc = _encoder()
    enc.set_active_mode("streaming", StreamingConfig(3, left_chunks=1, lookahead=1))
    xs = torch.randn(2, 64, 20)
    out, olens, _ = enc(xs, torch.tensor([64, 45]))
    alone, alens, _ = enc(xs[1:, :45], torch.tensor([45]))
    n = int(alens[0])
    assert int(olens[1]) == n
    torch.testing.assert_close(out[1, :n], alone[0], atol=1e-5, rtol=0)


def test_streaming_mode_trains_sparse():
    enc = _encoder().train()
    enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), 0.5, enc.mask_spec))
    enc.set_active_mode("streaming", StreamingConfig(4, 1, 1))
    out, _, _ = enc(torch.randn(2, 40, 20), torch.tensor([40, 33]))
    out.square().sum().backward()
    dw = enc.encoders[0].conv_module.depthwise_conv.weight.grad  # (C, 1, K)
    assert (dw[..., 3:] == 0).all() and dw[..., :3].abs().sum() > 0  # future taps unused
