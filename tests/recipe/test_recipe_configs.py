"""Every recipe config builds a model through our task, and the Table A
configs describe the same model as the dense baseline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from espnet_omni.tasks import OmniASRTask, OmniSSLTask

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
TRAIN_CONFIGS = [p for p in sorted(CONF.glob("train_*.yaml")) + sorted((CONF / "ablation").glob("*.yaml"))
                 + sorted(ROOT.glob("egs/*/*/conf/train_*.yaml")) if not p.name.startswith("train_lm_")]
LM_CONFIGS = sorted(CONF.glob("train_lm_*.yaml"))
SSL_CONFIGS = sorted(CONF.glob("pretrain_*.yaml")) + sorted(ROOT.glob("egs/*/*/conf/pretrain_*.yaml"))
SUPERNET_ONLY = {"mask_granularity", "mask_block", "mask_n", "mask_m", "prune_frontend", "prunable", "prune_exclude"}


# House rule: a training config's comments say what it needs, `Hardware/time: <hardware>, <time>`
# (a duration, or a multiple of / the same as another config's), so a user can plan the run. A GPU
# recipe that was never run here may say "not measured here" instead of a time; a tiny smoke-test
# config may say the tests run it.
HARDWARE = re.compile(r"\b\d+ CPU cores?\b|\bGPUs?\b")
DURATION = re.compile(r"\d+(\.\d+)? ?(min|minutes|h|hours?)\b")
RELATIVE = re.compile(r"(\bas|\d+(\.\d+)?x) ([\w.-]+\.yaml)\b")


def _check_says_what_it_needs(config: Path) -> None:
    lines = config.read_text().splitlines()
    comments = " ".join(line.strip()[1:].strip() for line in lines if line.strip().startswith("#"))
    if "tiny" in config.name and "tests run it" in comments:
        return
    said = re.search(r"Hardware/time:\s*(.*?)(\.\s|\.?$)", comments)
    assert said, f"{config}: no 'Hardware/time:' comment (say what it needs)"
    says = said.group(1)
    assert HARDWARE.search(says), f"{config}: 'Hardware/time: {says}' names no hardware (CPU cores, GPU)"
    relative = RELATIVE.search(says)
    if relative:
        assert (config.parent / relative.group(3)).is_file(), f"{config}: {relative.group(3)} not found"
    unmeasured = "GPU" in says and "not measured here" in says
    assert DURATION.search(says) or relative or unmeasured, f"{config}: 'Hardware/time: {says}' states no time"


@pytest.mark.parametrize("text, fails", [
    ("# Hardware/time: 2 CPU cores, ~25 min.\nencoder: conformer\n", None),
    ("# Hardware/time: 2 CPU\n# cores, ~10 min per target.\nencoder: conformer\n", None),
    ("# Hardware/time: one GPU, ~2x ok.yaml (not measured here).\n", None),
    ("# Hardware/time: one GPU (not measured here).\n", None),
    ("# Smoke test (the tests run it).\n", "no 'Hardware/time:'"),  # only a tiny config may say so
    ("# Hardware/time: 2 CPU cores.\n", "states no time"),
    ("# Hardware/time: 2 CPU cores (not measured here).\n", "states no time"),  # a CPU config is measured
    ("# Hardware/time: ~25 min. 2 CPU cores.\n", "names no hardware"),  # the statement is one sentence
    ("# Hardware/time: one GPU, ~2x missing.yaml.\n", "missing.yaml not found"),
    ("# a comment\nnote: 'Hardware/time: 2 CPU cores, ~25 min'\n", "no 'Hardware/time:'"),  # not a comment
])
def test_says_what_it_needs_rule(tmp_path, text, fails):
    (tmp_path / "ok.yaml").write_text("{}\n")
    config = tmp_path / "train_asr_x.yaml"
    config.write_text(text)
    if fails is None:
        _check_says_what_it_needs(config)
    else:
        with pytest.raises(AssertionError, match=re.escape(fails)):
            _check_says_what_it_needs(config)
    (tmp_path / "train_asr_tiny_x.yaml").write_text("# Smoke test (the tests run it).\n")
    _check_says_what_it_needs(tmp_path / "train_asr_tiny_x.yaml")


def _args(config: Path, tmp_path: Path, task=OmniASRTask):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>", "a", "b", "<space>", "<sos/eos>"]) + "\n")
    import numpy as np

    stats = tmp_path / "feats_stats.npz"  # what stage 4 writes: count, sum, sum_square
    np.savez(stats, count=np.array(10), sum=np.zeros(80), sum_square=np.full(80, 10.0))
    # As the recipe does: stage 4's statistics for a global_mvn model only.
    norm = (yaml.safe_load(config.read_text()) or {}).get("normalize", "utterance_mvn")
    stats_opts = ["--normalize_conf", f"stats_file={stats}"] if norm == "global_mvn" else []
    return task.get_parser().parse_args(
        ["--config", str(config), "--token_list", str(tokens), "--output_dir", str(tmp_path / "exp"),
         *stats_opts]
    )


@pytest.mark.parametrize("config", TRAIN_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_builds_model_and_trainer_options(config, tmp_path):
    args = _args(config, tmp_path)
    model = OmniASRTask.build_model(args)
    assert sum(p.numel() for p in model.parameters()) > 0
    OmniASRTask.trainer.build_options(args)  # validates omni_conf
    _check_says_what_it_needs(config)


@pytest.mark.parametrize("config", LM_CONFIGS, ids=lambda p: p.name)
def test_lm_config_builds_with_espnet_lm_task(config, tmp_path):
    from espnet2.tasks.lm import LMTask

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>", "a", "<space>", "<sos/eos>"]) + "\n")
    args = LMTask.get_parser().parse_args(["--config", str(config), "--token_list", str(tokens),
                                           "--output_dir", str(tmp_path / "exp")])
    assert sum(p.numel() for p in LMTask.build_model(args).parameters()) > 0


@pytest.mark.parametrize("conf_dir", [CONF, ROOT / "egs/librispeech/asr1/conf"], ids=["embedded", "librispeech"])
@pytest.mark.parametrize("name", ["train_asr_omni.yaml", "train_asr_prune.yaml"])
def test_table_a_configs_match_the_dense_model(conf_dir, name):
    dense = yaml.safe_load((conf_dir / "train_asr_ctc.yaml").read_text())
    other = yaml.safe_load((conf_dir / name).read_text())
    conf = {k: v for k, v in other["encoder_conf"].items() if k not in SUPERNET_ONLY}
    assert conf == dense["encoder_conf"]
    for key in ("frontend_conf", "model_conf", "normalize", "specaug_conf", "optim", "batch_bins"):
        assert other.get(key) == dense.get(key), key


@pytest.mark.parametrize("config", SSL_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_pretraining_config_builds_and_matches_its_fine_tuning_model(config, tmp_path):
    args = _args(config, tmp_path, OmniSSLTask)
    model = OmniSSLTask.build_model(args)
    OmniSSLTask.trainer.build_options(args)
    assert type(model).__name__ == "OmniSSLModel" and type(model.losses[0]).__name__ == "Wav2Vec2Loss"
    _check_says_what_it_needs(config)
    # Fine-tuning (rows 4-5) loads it into the dual-mode ASR model: same blocks, the
    # pre-encoder becomes encoder.embed (input_layer conv2d of the same size).
    tiny = "tiny_" if "tiny" in config.name else ""
    asr = yaml.safe_load((config.parent / f"train_asr_{tiny}dual.yaml").read_text())
    ssl = yaml.safe_load(config.read_text())
    assert ssl["encoder_conf"]["input_layer"] is None and asr["encoder_conf"]["input_layer"] == "conv2d"
    strip = lambda c: {k: v for k, v in c.items() if k != "input_layer"}  # noqa: E731
    assert strip(ssl["encoder_conf"]) == strip(asr["encoder_conf"])
    assert ssl["preencoder_conf"]["output_size"] == asr["encoder_conf"]["output_size"]
    assert ssl["frontend_conf"] == asr["frontend_conf"]


@pytest.mark.parametrize("conf_dir", [CONF, ROOT / "egs/librispeech/asr1/conf"], ids=["embedded", "librispeech"])
@pytest.mark.parametrize("name", ["train_asr_stream.yaml", "train_asr_dual.yaml"])
def test_table_b_configs_match_the_dense_model(conf_dir, name):
    dense = yaml.safe_load((conf_dir / "train_asr_ctc.yaml").read_text())
    other = yaml.safe_load((conf_dir / name).read_text())
    conf = {k: v for k, v in other["encoder_conf"].items() if k != "streaming"}
    assert conf == dense["encoder_conf"]
    for key in ("frontend_conf", "model_conf", "normalize", "specaug_conf", "optim", "batch_bins", "max_epoch"):
        assert other.get(key) == dense.get(key), key
