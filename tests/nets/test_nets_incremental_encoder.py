"""EncoderStream: chunk-by-chunk output equals the simulated streaming forward."""

import itertools

import pytest
import torch

from espnet_omni.nets.chunk_config import StreamingConfig, encoder_right_context
from espnet_omni.nets.chunk_step import ChunkStep
from espnet_omni.nets.incremental_encoder import EncoderStream, subsampling_geometry
from espnet_omni.nets.omni_conformer import OmniConformerEncoder
from espnet_omni.sparsity.subnet import SubnetConfig

BASE = dict(input_size=20, output_size=16, attention_heads=2, linear_units=32,
            num_blocks=3, cnn_module_kernel=5, macaron_style=True)
POS = {
    "rel": dict(rel_pos_type="latest"),
    "abs": dict(pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn"),
}
CFGS = [StreamingConfig(4), StreamingConfig(4, 1, 2), StreamingConfig(3, 0, 3, 1),
        StreamingConfig(5, 2, 1)]


def _encoder(pos="rel", **kw):
    torch.manual_seed(0)
    enc = OmniConformerEncoder(**{**BASE, **POS[pos], **kw}).eval()
    for m in enc.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return enc


def _simulated(enc, x, cfg):
    enc.set_active_mode("streaming", cfg)
    with torch.no_grad():
        out = enc(x[None], torch.tensor([x.size(0)]))[0][0]
    enc.set_active_mode("full")
    return out


def _streamed(enc, x, cfg, sizes=(1, 7, 13, 0, 4)):
    stream, outs, i = EncoderStream(enc, cfg), [], 0
    for n in itertools.cycle(sizes):
        if i >= x.size(0):
            break
        outs.append(stream.feed(x[i : i + n]))
        i += n
    outs.append(stream.finish())
    return torch.cat(outs)


@pytest.mark.parametrize("pos", list(POS))
@pytest.mark.parametrize("cfg", CFGS, ids=str)
def test_stream_equals_simulated(pos, cfg):
    enc = _encoder(pos)
    x = torch.randn(83, 20)
    ref = _simulated(enc, x, cfg)
    torch.testing.assert_close(_streamed(enc, x, cfg), ref, atol=1e-4, rtol=0)


def test_sparse_subnet_and_prunable_depthwise():
    enc = _encoder(prunable=["encoders.*.self_attn.linear_*",
                             "encoders.*.conv_module.depthwise_conv"], mask_granularity="row")
    enc.set_active_subnet(SubnetConfig.uniform(enc.prunable_layers(), 0.5, enc.mask_spec))
    x = torch.randn(70, 20)
    cfg = StreamingConfig(4, 1, 1)
    torch.testing.assert_close(_streamed(enc, x, cfg, (9,)), _simulated(enc, x, cfg),
                               atol=1e-4, rtol=0)


def test_chunks_come_out_as_soon_as_their_input_is_there():
    enc = _encoder()
    cfg = StreamingConfig(4)  # no look-ahead: chunk k needs feature frame 4*(4k+3)+6
    stride, field = subsampling_geometry(enc.embed)
    assert (stride, field) == (4, 7)
    stream = EncoderStream(enc, cfg)
    x = torch.randn(80, 20)
    last_needed = stride * (cfg.chunk_size - 1) + field - 1  # 18: last frame of chunk 0
    assert stream.feed(x[:last_needed]).size(0) == 0
    assert stream.feed(x[last_needed : last_needed + 1]).size(0) == 4
    assert stream.chunks_done == 1
    ahead = StreamingConfig(4, lookahead=1)  # cascades over the 3 blocks
    right = encoder_right_context(ahead, 3)
    assert right == 2 * 4 + 1
    look = EncoderStream(enc, ahead)
    need = stride * (cfg.chunk_size - 1 + right) + field - 1  # feature frame 54
    assert look.feed(x[:need]).size(0) == 0
    assert look.feed(x[need : need + 1]).size(0) == 4


def test_empty_and_short_inputs():
    enc = _encoder()
    stream = EncoderStream(enc)
    assert stream.finish().shape == (0, 16)  # nothing fed at all
    stream.reset()
    assert stream.feed(torch.zeros(0, 20)).shape == (0, 16)
    assert stream.feed(torch.randn(5, 20)).shape == (0, 16)  # < receptive field
    assert stream.finish().shape == (0, 16)


def test_unsupported_encoders_raise():
    legacy = OmniConformerEncoder(**BASE)  # rel_pos_type: legacy (ESPnet's default)
    with pytest.raises(NotImplementedError, match="rel_pos_type: latest"):
        EncoderStream(legacy)
    linear = OmniConformerEncoder(**{**BASE, **POS["rel"]}, input_layer="linear")
    with pytest.raises(NotImplementedError, match="conv2d"):
        EncoderStream(linear)


@pytest.mark.parametrize("cfg", [StreamingConfig(4), StreamingConfig(4, 1, 2), StreamingConfig(3, 0, 3, 1)], ids=str)
def test_long_input_equals_simulated_across_cache_moves_and_growth(cfg):
    """~150 encoder frames: the key/value buffer (64 frames at first) moves its live frames to
    the front (bounded left context) or doubles (unbounded) several times, and the projected
    relative positions are recomputed at larger spans; the output stays the simulated one."""
    enc = _encoder()
    x = torch.randn(600, 20)
    torch.testing.assert_close(_streamed(enc, x, cfg, (37, 5, 90)), _simulated(enc, x, cfg), atol=1e-4, rtol=0)


def test_relative_positions_are_projected_once_per_doubling_not_per_chunk():
    enc = _encoder()
    calls = []
    hooks = [layer.self_attn.linear_pos.register_forward_hook(lambda *a: calls.append(1)) for layer in enc.encoders]
    stream = EncoderStream(enc, StreamingConfig(4))
    x = torch.randn(800, 20)  # ~200 encoder frames = ~50 chunks
    for i in range(0, x.size(0), 16):
        stream.feed(x[i : i + 16])
    stream.finish()
    for h in hooks:
        h.remove()
    assert stream.chunks_done >= 45
    # per block: the first span, then one per doubling of the history (<= log2(200) + 1)
    assert len(calls) <= len(enc.encoders) * 9, len(calls)


def test_bounded_left_context_keeps_fixed_cache_shapes():
    """left_chunks >= 0: the step's caches keep the shapes they start with (keys of the left
    chunk, plus a lagging block's pending chunk); left_chunks -1: C more key frames per chunk."""
    enc = _encoder()
    cfg = StreamingConfig(8, 1, 2)  # blocks 1 and 2 lag a chunk

    def shapes(frames, cfg):
        stream = EncoderStream(enc, cfg)
        x = torch.randn(frames, 20)
        for i in range(0, frames, 64):
            stream.feed(x[i : i + 64])
        return stream, [tuple(c.shape) for c in stream.caches]

    initial = [tuple(c.shape) for c in EncoderStream(enc, cfg).caches]
    assert shapes(400, cfg)[1] == shapes(2400, cfg)[1] == initial
    assert [initial[i][2] for i in (0, 3, 7)] == [8, 16, 16]  # keys: 1 left chunk (+ the pending one)
    assert initial[6] == (1, 8, 16) and initial[-1] == (1,)  # block 1's pending chunk, the offset
    stream, grown = shapes(400, StreamingConfig(8))
    assert grown[0][2] == stream.chunks_done * 8 == int(stream.caches[-1])


def test_step_refuses_a_call_of_partial_chunks():
    step = ChunkStep(_encoder(), StreamingConfig(4, lookahead=2))
    with pytest.raises(ValueError, match="k \\* chunk_size \\+ lookahead frames"):
        step.forward_chunk(torch.randn(1, 7, 16), step.initial_caches())
