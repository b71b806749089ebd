"""Endpointing: the rules (Endpointer), SegmentingRecognizer over a fake and a tiny model, the CLI."""

import json

import numpy as np
import pytest
import soundfile
import torch

from espnet_omni.bin import asr_inference_streaming
from espnet_omni.inference.ctc_decoder import CTCGreedy
from espnet_omni.inference.endpoint import EndpointConfig, Endpointer, silent_frames
from espnet_omni.inference.segmenter import EndpointGate, SegmentingRecognizer
from espnet_omni.inference.streaming_recognizer import StreamingRecognizer, check_audio
from espnet_omni.nets.chunk_config import StreamingConfig
from espnet_omni.testing.tiny_asr import VALID

OFF = dict(rule1_min_trailing_silence=None, rule2_min_trailing_silence=None, rule3_max_segment_length=None)


# ------------------------------------------------------------------ rules
def _fire(config, silent, frame_ms=40.0):
    """(index of the first frame at which a rule fires, that rule) or (None, None)."""
    ep = Endpointer(config)
    for i, s in enumerate(silent):
        rule = ep.step(s, frame_ms)
        if rule is not None:
            return i, rule
    return None, None


def test_rule1_silence_with_nothing_decoded():
    cfg = EndpointConfig(**{**OFF, "rule1_min_trailing_silence": 0.2})  # 5 frames of 40 ms
    assert _fire(cfg, [True] * 10) == (4, 1)
    assert _fire(cfg, [True] * 4) == (None, None)
    assert _fire(cfg, [True, False] + [True] * 10) == (None, None)  # something decoded: not rule 1


def test_rule2_silence_after_speech():
    cfg = EndpointConfig(**{**OFF, "rule2_min_trailing_silence": 0.12})  # 3 frames
    assert _fire(cfg, [True] * 20) == (None, None)  # silence alone: rule 2 needs speech
    assert _fire(cfg, [True, False, True, True, False] + [True] * 5) == (7, 2)  # the run restarts at speech
    assert _fire(EndpointConfig(rule2_min_trailing_silence=0.12), [True] * 20) == (None, None)  # rule 1: 5 s


def test_rule3_maximum_segment_length():
    cfg = EndpointConfig(**{**OFF, "rule3_max_segment_length": 0.2})
    assert _fire(cfg, [False] * 10) == (4, 3)
    assert _fire(cfg, [True, False] * 5) == (4, 3)  # whatever the frames
    assert _fire(cfg, [False] * 10, frame_ms=20.0) == (9, 3)  # counted in ms, not frames


def test_defaults_and_reset():
    cfg = EndpointConfig()
    frames_40ms = lambda s: round(s * 25)  # noqa: E731
    assert _fire(cfg, [True] * 200)[1] == 1 and _fire(cfg, [True] * 200)[0] == frames_40ms(5.0) - 1
    assert _fire(cfg, [False] + [True] * 30) == (frames_40ms(0.6), 2)  # a 0.8 s pause cuts
    assert _fire(cfg, [False] * 600) == (frames_40ms(20.0) - 1, 3)
    ep = Endpointer(EndpointConfig(**{**OFF, "rule2_min_trailing_silence": 0.08}))
    assert [ep.step(s, 40.0) for s in (False, True, True)] == [None, None, 2]
    ep.reset()
    assert (ep.segment_ms, ep.trailing_silence_ms, ep.speech_frames, ep.rule) == (0.0, 0.0, 0, None)
    assert ep.step(True, 40.0) is None  # no speech in the new segment: rule 2 cannot fire


def test_config_checks_name_the_key():
    with pytest.raises(ValueError, match="rule2_min_trailing_silence=-1.*seconds > 0"):
        EndpointConfig(rule2_min_trailing_silence=-1)
    with pytest.raises(ValueError, match="rule3_max_segment_length='20s'.*number"):
        EndpointConfig.from_dict({"rule3_max_segment_length": "20s"})
    with pytest.raises(ValueError, match="blank_threshold=1.5.*probability"):
        EndpointConfig(blank_threshold=1.5)
    with pytest.raises(ValueError, match=r"key\(s\) rule4 unknown \(valid: rule1_min_trailing_silence"):
        EndpointConfig.from_dict({"rule4": 1.0})
    assert EndpointConfig.from_dict({"rule3_max_segment_length": None}).rule3_max_segment_length is None


def test_silent_frames_argmax_or_threshold():
    p = np.array([[0.5, 0.3, 0.2], [0.4, 0.45, 0.15], [0.85, 0.1, 0.05]])
    assert silent_frames(np.log(p), 0).tolist() == (p.argmax(-1) == 0).tolist()
    assert silent_frames(np.log(p), 0, 0.8).tolist() == (p[:, 0] >= 0.8).tolist()
    assert silent_frames(np.zeros((0, 3)), 0).shape == (0,)


# ----------------------------------------------- SegmentingRecognizer, fake
FRAME, FS = 4, 1000  # samples per encoder frame (4 ms), sample rate


class FakeRecognizer:
    """A recognizer whose frame ``f``'s best token is the value of its first sample (0: blank);
    ``chunk`` frames are decoded at once, when ``lookahead`` more frames of audio are in."""

    fs, transducer, blank_id, beam_size = FS, False, 0, 1

    def __init__(self, chunk=2, lookahead=1):
        self.cfg, self.lookahead = StreamingConfig(chunk), lookahead
        self.search = CTCGreedy(0)
        self.reset()

    def chunk_samples(self):
        return self.cfg.chunk_size * FRAME

    def check_audio(self, audio, fs):
        return check_audio(audio, fs, FS)

    def reset(self):
        self.audio, self.frames, self.chunk_ms, self._final = np.zeros(0, np.float32), 0, [], None
        self.search.reset()

    def _emit(self, n):
        tokens = self.audio[self.frames * FRAME : (self.frames + n) * FRAME : FRAME].astype(int)
        self.search.step(np.log(np.eye(6)[tokens] * 0.97 + 0.005))  # (n, V)
        self.frames += n
        self.chunk_ms.append(1.0)

    def feed(self, audio, fs=FS):
        if self._final is not None:
            raise RuntimeError("feed() after finish()")
        self.audio = np.concatenate([self.audio, self.check_audio(audio, fs)])
        while self.audio.size // FRAME - self.frames >= self.cfg.chunk_size + self.lookahead:
            self._emit(self.cfg.chunk_size)
        return self._text()

    def finish(self):
        if self._final is None:
            if self.audio.size // FRAME > self.frames:
                self._emit(self.audio.size // FRAME - self.frames)
            self._final = self._text()
        return self._final

    def _text(self):
        return " ".join(map(str, self.search.best()))


def _stream(tokens):
    return np.repeat(np.asarray(tokens, np.float32), FRAME)  # (frames * FRAME,)


def _decode_alone(audio, **fake):
    rec = FakeRecognizer(**fake)
    rec.feed(audio)
    return rec.finish()


def _segment(audio, config, sizes=None, trim=False, **fake):
    seg = SegmentingRecognizer(FakeRecognizer(**fake), config, trim=trim)
    if sizes is None:
        seg.feed(audio, FS)
    else:
        i = 0
        while i < audio.size:
            for n in sizes:
                seg.feed(audio[i : i + n], FS)
                i += n
    seg.finish()
    return seg.segments()


RULE2_3 = EndpointConfig(**{**OFF, "rule2_min_trailing_silence": 3 * FRAME / FS})  # 3 blank frames
GROUPS = [[1, 1, 0, 2], [3, 0, 4], [5]]  # speech groups; >= 3 blank frames between them


def _groups_stream():
    tokens, last_speech = [], []
    for gap, group in zip((0, 5, 6), GROUPS):
        tokens += [0] * gap + group
        last_speech.append(len(tokens) - 1)
    return _stream(tokens), last_speech


@pytest.mark.parametrize("sizes", [None, (5, 1, 13, 0, 3), (7,)], ids=["whole", "odd", "7"])
def test_cuts_at_pauses_each_segment_decoded_alone(sizes):
    audio, last_speech = _groups_stream()
    segs = _segment(audio, RULE2_3, sizes)
    assert len(segs) == len(GROUPS)
    assert segs[0].start == 0.0 and segs[-1].end == audio.size / FS
    for a, b in zip(segs, segs[1:]):
        assert a.end == b.start  # contiguous: nothing dropped, nothing decoded twice
    for s, last in zip(segs[:-1], last_speech):  # the cut: rule 2's 3 blank frames after the last token
        assert s.end == (last + 1 + 3) * FRAME / FS
    for s in segs:  # the recognizer was reset: each segment's text is that of its audio alone
        assert s.text == _decode_alone(audio[round(s.start * FS) : round(s.end * FS)])
    assert " ".join(s.text for s in segs) == _decode_alone(audio)


def test_frames_after_the_cut_in_the_same_chunk_go_to_the_next_segment():
    # chunks of 4 frames: frames 2..4 blank reach rule 2 at frame 4; frame 5 ("2") is in the same chunk
    audio = _stream([0, 1, 0, 0, 0, 2, 0, 0])
    segs = _segment(audio, RULE2_3, chunk=4)
    assert [s.text for s in segs] == ["1", "2"]  # not "1 2" then "2"
    assert segs[0].end == 5 * FRAME / FS


def test_endpoint_in_the_last_frames_of_finish():
    # chunks of 2 + 1 look-ahead frame: frames 4, 5 come out of finish(); frame 4 completes rule 2
    audio = _stream([0, 1, 0, 0, 0, 2])
    segs = _segment(audio, RULE2_3)
    assert [(s.text, s.end) for s in segs] == [("1", 5 * FRAME / FS), ("2", audio.size / FS)]


def test_rule1_drops_silence_and_rule3_cuts_speech():
    cfg = EndpointConfig(**{**OFF, "rule1_min_trailing_silence": 10 * FRAME / FS})
    audio = _stream([0] * 23 + [3, 3, 0, 4])
    segs = _segment(audio, cfg)
    assert [(s.start, s.text) for s in segs] == [(20 * FRAME / FS, "3 4")]  # two silent segments dropped
    cfg = EndpointConfig(**{**OFF, "rule3_max_segment_length": 4 * FRAME / FS})
    audio = _stream([1, 2, 3, 4, 5, 1, 2, 3, 4, 5])
    segs = _segment(audio, cfg)
    assert [round(s.start * FS) // FRAME for s in segs] == [0, 4, 8]
    assert [s.text for s in segs] == [_decode_alone(audio[round(s.start * FS) : round(s.end * FS)]) for s in segs]


def test_trim_gives_the_speech_span():
    audio = _stream([0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 3, 0])
    segs = _segment(audio, RULE2_3, trim=True)
    assert [(s.start * FS / FRAME, s.end * FS / FRAME, s.text) for s in segs] == [(2, 5, "1 2"), (10, 11, "3")]


def test_api_edge_cases():
    seg = SegmentingRecognizer(FakeRecognizer(), RULE2_3)
    assert seg.feed(_stream([1, 1, 2]), FS) == "1"  # partial: the frames decoded so far
    assert seg.finish() == "1 2" and seg.finish() == "1 2"
    with pytest.raises(RuntimeError, match="reset"):
        seg.feed(_stream([1]), FS)
    seg.reset()
    assert seg.finish() == "" and seg.segments() == []
    assert seg.chunk_samples() == 2 * FRAME and seg.beam_size == 1
    again = SegmentingRecognizer(seg.rec)  # wrapping twice does not stack gates
    assert isinstance(seg.rec.search, EndpointGate) and not isinstance(again.gate.inner, EndpointGate)
    fake = FakeRecognizer()
    fake.transducer = True
    with pytest.raises(NotImplementedError, match="transducer"):
        SegmentingRecognizer(fake)


# ------------------------------------------------- tiny model, ONNX, CLI
def _valid_wavs():
    return [soundfile.read(line.split()[1], dtype="float32")[0]
            for line in sorted((VALID / "wav.scp").read_text().splitlines())]


def _segment_model(rec, audio, config):
    seg = SegmentingRecognizer(rec, config)
    for i in range(0, audio.size, 1000):
        seg.feed(audio[i : i + 1000], rec.fs)
    seg.finish()
    return seg.segments(), rec.posteriors()  # the last segment's (T', V)


def test_tiny_model_reset_between_segments(model_and_args, in_root, tmp_path):
    model, args = model_and_args
    torch.manual_seed(0)
    with torch.no_grad():  # random weights: varied tokens (the 1-epoch model says "c" to most frames)
        for p in model.encoder.parameters():
            p.normal_(0.0, 0.3)
    model.encoder.refresh_masks()
    cfg = StreamingConfig(4)
    audio = np.concatenate(_valid_wavs())  # 1.05 s
    rule3 = EndpointConfig(**{**OFF, "rule3_max_segment_length": 0.4})
    segs, last = _segment_model(StreamingRecognizer(model, cfg, train_args=args), audio, rule3)
    assert [s.start for s in segs] == [0.0, 0.4, 0.8] and segs[-1].end == audio.size / 16000
    assert all(s.text for s in segs)
    alone = StreamingRecognizer(model, cfg, train_args=args)  # the last segment: exactly its audio alone
    alone.feed(audio[round(segs[-1].start * 16000):])
    assert segs[-1].text == alone.finish()
    np.testing.assert_allclose(last, alone.posteriors(), atol=1e-5, rtol=0)

    # ONNX Runtime: the same segments
    from espnet_omni.export.onnx_export import export_onnx
    from espnet_omni.inference.onnx_recognizer import OnnxStreamingRecognizer

    export_onnx(model, tmp_path / "onnx", cfg, modes=("streaming",), token_list=list(model.token_list),
                token_type="char")
    onnx_segs, onnx_last = _segment_model(OnnxStreamingRecognizer(tmp_path / "onnx"), audio, rule3)
    assert onnx_segs == segs
    np.testing.assert_allclose(onnx_last, last, atol=1e-4, rtol=0)


def test_cli_writes_segments(in_root, tmp_path):
    def cli(out, *extra):
        asr_inference_streaming.main([
            "--asr_train_config", "exp/supernet/config.yaml", "--asr_model_file", "exp/supernet/valid.loss.best.pth",
            "--data_dir", str(VALID), "--output_dir", str(out), "--chunk_size", "4", *extra])

    cli(tmp_path / "ep", "--endpoint", "true", "--endpoint_conf", "rule3_max_segment_length=0.2")
    rows = [line.split(maxsplit=4) for line in (tmp_path / "ep" / "segments.txt").read_text().splitlines()]
    texts = dict(line.split(maxsplit=1) for line in (tmp_path / "ep" / "text").read_text().splitlines())
    for utt in texts:  # text = the utterance's segments joined; segments numbered from 0, contiguous
        mine = [r for r in rows if r[0] == utt]
        assert [int(r[1]) for r in mine] == list(range(len(mine))) and len(mine) >= 2
        assert float(mine[0][2]) == 0.0 and all(float(r[3]) - float(r[2]) <= 0.2 + 1e-9 for r in mine)
        assert " ".join(r[4] for r in mine) == texts[utt]
    lat = json.loads((tmp_path / "ep" / "latency.json").read_text())
    assert lat["endpoint"]["num_segments"] == len(rows) and lat["endpoint"]["rule3_max_segment_length"] == 0.2
    cli(tmp_path / "plain")
    assert not (tmp_path / "plain" / "segments.txt").exists()
    with pytest.raises(SystemExit, match="--endpoint_conf: endpoint key.*rule9 unknown"):
        cli(tmp_path / "bad", "--endpoint", "true", "--endpoint_conf", "rule9=1")
    with pytest.raises(SystemExit, match="--endpoint_conf needs --endpoint true"):
        cli(tmp_path / "bad", "--endpoint_conf", "rule3_max_segment_length=1")
