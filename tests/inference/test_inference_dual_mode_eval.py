"""bin/dual_mode_eval: both modes of a model, exported, decoded, streamed (run.sh stage 17)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from espnet_omni.bin import asr_inference_streaming, dual_mode_eval
from espnet_omni.testing.tiny_asr import VALID

DECODE = Path(__file__).resolve().parents[2] / "conf" / "decode_ctc.yaml"


def test_both_modes_are_exported_decoded_and_streamed(in_root, tmp_path):
    conf = yaml.safe_load(open("exp/supernet/config.yaml"))
    conf["omni_conf"] = {"dual_mode": {"streaming_sparsity": 0.5}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    out = tmp_path / "table_b"
    dual_mode_eval.main(["--asr_train_config", str(tmp_path / "config.yaml"),
                         "--asr_model_file", "exp/supernet/valid.loss.best.pth", "--data_dir", str(VALID),
                         "--out_dir", str(out), "--decode_name", "dec", "--chunk_size", "4",
                         "--inference_config", str(DECODE)])
    full = json.loads((out / "export_full/export.json").read_text())
    stream = json.loads((out / "export_stream/export.json").read_text())
    assert stream["nonzero_params"] < full["nonzero_params"] == full["total_params"]
    assert yaml.safe_load((out / "subnet_stream.yaml").read_text())["sparsities"]
    hyps = (out / "export_full/dec" / VALID.name / "text").read_text().splitlines()
    assert [h.split()[0] for h in hyps] == ["valid_utt0", "valid_utt1"]
    # the streaming decode is the streaming CLI on the 50% sub-network
    asr_inference_streaming.main(["--asr_train_config", "exp/supernet/config.yaml",
                                  "--asr_model_file", "exp/supernet/valid.loss.best.pth",
                                  "--data_dir", str(VALID), "--output_dir", str(tmp_path / "cli"),
                                  "--chunk_size", "4", "--subnet", str(out / "subnet_stream.yaml")])
    assert (out / "stream" / VALID.name / "text").read_text() == (tmp_path / "cli/text").read_text()
    lat = json.loads((out / "stream" / VALID.name / "latency.json").read_text())
    assert lat["num_threads"] == 1 and lat["streaming"]["chunk_size"] == 4
