"""wav2vec 2.0 pretraining through ESPnet's SSL task (OmniSSLTask): the
conv2d pre-encoder, the omni_ssl model, a tiny pretraining run whose loss
falls, dual-mode pretraining, and fine-tuning that loads the SSL weights."""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.torch_utils.load_pretrained_model import load_pretrained_model
from espnet2.train.reporter import Reporter

from espnet_omni.bin import ssl_train
from espnet_omni.nets.conv_preencoder import Conv2dSubsamplingPreEncoder
from espnet_omni.tasks import OmniASRTask, OmniSSLTask
from espnet_omni.testing import tiny_asr
from espnet_omni.testing.tiny_asr import TOKENS, TRAIN, VALID, write_corpus

# The tiny ASR model of espnet_omni.testing.tiny_asr, as an SSL model: the
# conv2d subsampling moves to the pre-encoder (same parameter names).
ENCODER_CONF = ("{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 1, input_layer: null,"
                " cnn_module_kernel: 3, dropout_rate: 0.0, positional_dropout_rate: 0.0,"
                " attention_dropout_rate: 0.0, rel_pos_type: latest, streaming: {chunk_size: 4}}")


def _loss_config(mask_conf: str) -> Path:
    """ESPnet takes the list-valued ``loss`` and ``util`` from a YAML config only
    (written into the working directory: the corpus root)."""
    path = Path(f"w2v_{zlib.crc32(mask_conf.encode()):08x}.yaml")
    path.write_text("loss:\n- name: wav2vec2\n  conf: {final_dim: 16, num_negatives: 5, codebook_entries: 8,"
                    " codebook_dim: 16, quantizer_temperature: [2.0, 0.5, 0.99]}\n"
                    f"util:\n- name: mask\n  conf: {mask_conf}\n")
    return path


def _model_flags(mask_conf: str = "{mask_prob: 0.65, mask_length: 2}") -> list[str]:
    return [
        "--config", str(_loss_config(mask_conf)),
        "--ngpu", "0", "--num_workers", "0", "--seed", "0", "--use_preprocessor", "true",
        "--token_type", "char", "--token_list", str(TOKENS),
        "--frontend", "default", "--frontend_conf", "{n_fft: 512, hop_length: 160, n_mels: 40}",
        "--preencoder", "conv2d_subsampling", "--preencoder_conf", "{output_size: 16}",
        "--encoder", "omni_conformer", "--encoder_conf", ENCODER_CONF,
        "--model", "omni_ssl",
    ]


def _data_flags() -> list[str]:
    return ["--train_data_path_and_name_and_type", f"{TRAIN}/wav.scp,speech,sound",
            "--valid_data_path_and_name_and_type", f"{VALID}/wav.scp,speech,sound"]


def _train_flags(stats: Path, out: Path, epochs: int) -> list[str]:
    return [
        "--normalize", "global_mvn", "--normalize_conf", f"stats_file={stats}/train/feats_stats.npz",
        "--train_shape_file", f"{stats}/train/speech_shape", "--valid_shape_file", f"{stats}/valid/speech_shape",
        "--batch_type", "folded", "--batch_size", "4", "--fold_length", "80000",
        "--max_epoch", str(epochs), "--optim", "adam", "--optim_conf", "{lr: 0.003}",
        "--best_model_criterion", "valid,loss,min", "--keep_nbest_models", "1",
        "--use_matplotlib", "false", "--use_tensorboard", "false", "--output_dir", str(out),
    ] + _model_flags() + _data_flags()


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """Tiny corpus, SSL stats (no transcripts read), 10 epochs of plain wav2vec 2.0."""
    root = tmp_path_factory.mktemp("ssl")
    write_corpus(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        ssl_train.main(["--collect_stats", "true", "--normalize", "none", "--batch_type", "unsorted",
                        "--batch_size", "4", "--train_shape_file", f"{TRAIN}/wav.scp",
                        "--valid_shape_file", f"{VALID}/wav.scp", "--output_dir", "exp/ssl_stats"]
                       + _model_flags() + _data_flags())
        ssl_train.main(_train_flags(Path("exp/ssl_stats"), Path("exp/ssl"), 10))
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture
def in_root(pretrained, monkeypatch) -> Path:
    monkeypatch.chdir(pretrained)
    return pretrained


def _reporter(exp: Path) -> Reporter:
    rep = Reporter()
    rep.load_state_dict(torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"])
    return rep


def _ssl_model(**overrides):
    args = OmniSSLTask.get_parser().parse_args(
        ["--output_dir", "unused", "--normalize", "none"] + _model_flags(**overrides))
    return OmniSSLTask.build_model(args)


# ------------------------------------------------------------------ pre-encoder
def test_preencoder_equals_the_conformer_embed_without_positional_encoding():
    torch.manual_seed(0)
    enc = ConformerEncoder(40, output_size=16, attention_heads=2, linear_units=32, num_blocks=1,
                           rel_pos_type="latest")
    pre = Conv2dSubsamplingPreEncoder(40, 16)
    pre.load_state_dict({k[len("embed."):]: v for k, v in enc.state_dict().items()
                         if k.startswith("embed.") and "pe" not in k.split(".")[-1]})
    x, lens = torch.randn(2, 57, 40), torch.tensor([57, 30])
    y, ylens = pre(x, lens)
    conv = enc.embed.conv(x.unsqueeze(1))
    b, c, t, f = conv.shape
    ref = enc.embed.out(conv.transpose(1, 2).reshape(b, t, c * f))
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    _, masks = enc.embed(x, (torch.arange(57)[None, :] < lens[:, None])[:, None, :])
    assert ylens.tolist() == masks.squeeze(1).sum(1).tolist() == [13, 6]
    with pytest.raises(ValueError, match="needs >= 7 input frames"):
        pre(torch.randn(1, 6, 40), torch.tensor([6]))


# ------------------------------------------------------------------ the model
def test_features_are_the_unmasked_encoder_input(in_root):
    model = _ssl_model(mask_conf="{mask_prob: 0.65, mask_length: 5}")
    model.train()
    speech, lens = torch.randn(3, 16000 * 3), torch.tensor([48000, 48000, 40000])
    data = model.encode(speech, lens)
    mask = data["mask_info"]["mask_m"]
    feats = data["features"]
    emb = model.util_modules["mask"].mask_embedding
    assert feats.shape[:2] == mask.shape and bool(mask.any())
    assert not torch.allclose(feats[mask], emb.expand_as(feats[mask]))  # targets are not the mask embedding
    # masking fraction: spans of 5 starting with probability 0.65 / 5 per frame: about half, as wav2vec 2.0
    frac = mask[0].float().mean().item()
    assert 0.35 < frac < 0.75, frac


@pytest.mark.parametrize("conf, match", [
    ("{mask_prob: 1.5, mask_length: 2}", r"util: mask: conf: mask_prob=1.5 is outside \[0, 1\]"),
    ("{mask_prob: -0.1, mask_length: 2}", r"mask_prob=-0.1"),
    ("{mask_prob: 0.5, mask_length: 0}", r"mask_length=0 must be >= 1"),
    ("{mask_prob: 0.5, mask_length: 2, mask_channel_prob: 2.0}", r"mask_channel_prob=2.0"),
])
def test_bad_mask_config_raises(conf, match, in_root):
    with pytest.raises(ValueError, match=match):
        _ssl_model(mask_conf=conf)


def test_too_short_utterances_are_named(in_root):
    model = _ssl_model(mask_conf="{mask_prob: 0.65, mask_length: 5}")
    speech = torch.randn(2, 16000)
    with pytest.raises(ValueError, match=r"utterances \['short_one'\] have \[1\] encoder-input frames; "
                                         r"masking needs >= 10"):
        model(speech, torch.tensor([16000, 1500]), utt_id=["long_one", "short_one"])


def test_non_finite_loss_is_reported_with_ids_and_skipped(caplog, monkeypatch, in_root):
    model = _ssl_model()
    loss_fn = model.losses[0]

    def broken(**kwargs):
        raise FloatingPointError("non-finite wav2vec2 loss terms: contrastive")

    monkeypatch.setattr(loss_fn, "forward", broken)
    with caplog.at_level(logging.WARNING):
        loss, stats, _ = model(torch.randn(2, 16000), torch.tensor([16000, 16000]), utt_id=["u1", "u2"])
    assert "['u1', 'u2']" in caplog.text and "contrastive" in caplog.text
    assert torch.isnan(loss)
    loss.backward()  # NaN gradients: ESPnet's trainer skips the update (non-finite grad norm)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isnan(g).all() for g in grads)


# ------------------------------------------------------------------ training runs
def test_tiny_pretraining_learns(in_root):
    rep = _reporter(Path("exp/ssl"))
    acc = [rep.get_value("train", "w2v_acc", epoch=e) for e in range(1, 11)]
    loss = [rep.get_value("train", "w2v_contrastive", epoch=e) for e in range(1, 11)]
    assert sum(loss[-3:]) / 3 < loss[0], loss
    assert sum(acc[-3:]) / 3 > 1 / 6, acc  # chance: 1 of 1 + 5 distractors
    assert rep.get_value("train", "w2v_code_ppl", epoch=10) > 1.5  # no codebook collapse


def test_dual_mode_pretraining_reports_both_modes(in_root):
    ssl_train.main(_train_flags(Path("exp/ssl_stats"), Path("exp/ssl_dual"), 1) + [
        "--omni_conf", "{dual_mode: {streaming_sparsity: 0.5}, valid_sparsities: [0.5]}"])
    rep = _reporter(Path("exp/ssl_dual"))
    train_keys = set(rep.get_keys2("train", epoch=1))
    valid_keys = set(rep.get_keys2("valid", epoch=1))
    assert {"w2v_contrastive_full", "w2v_contrastive_stream", "w2v_acc_stream"} <= train_keys
    assert {"w2v_acc_full", "w2v_acc_stream_s50", "w2v_code_ppl_stream_s50"} <= valid_keys


def test_fine_tuning_loads_the_ssl_weights(in_root):
    """What ESPnet's --init_param does: the SSL pre-encoder becomes encoder.embed, the blocks load as they are."""
    args = OmniASRTask.get_parser().parse_args(
        tiny_asr.train_flags(Path("exp/ssl_stats"), Path("unused"), "omni_conformer"))
    torch.manual_seed(1)
    asr = OmniASRTask.build_model(args)
    before = {k: v.clone() for k, v in asr.state_dict().items()}
    ssl = torch.load("exp/ssl/valid.loss.best.pth", map_location="cpu")
    for spec in ("exp/ssl/valid.loss.best.pth:preencoder:encoder.embed",
                 "exp/ssl/valid.loss.best.pth:encoder:encoder"):
        load_pretrained_model(spec, asr, ignore_init_mismatch=False)
    after = asr.state_dict()
    loaded = 0
    for k, v in after.items():
        if not k.startswith("encoder."):
            continue
        src = ("preencoder." + k[len("encoder.embed."):]) if k.startswith("encoder.embed.") else k
        if src in ssl:
            torch.testing.assert_close(v, ssl[src], rtol=0, atol=0)
            loaded += not torch.equal(before[k], v)
    assert loaded >= 20  # conv2d subsampling + every block's weights changed
    assert torch.equal(after["ctc.ctc_lo.weight"], before["ctc.ctc_lo.weight"])  # the head is new
