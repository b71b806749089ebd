"""bin/dual_mode_eval: both modes of a model, exported, decoded, streamed (local/run_table_b.sh stage 3)."""

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


def test_each_network_gets_batchnorm_statistics_of_its_own_mode(in_root, tmp_path):
    """--calibration_dir: the full-context export carries statistics re-estimated in full mode, the
    streaming one in streaming mode (Table A and the main job recalibrate alike); without it both
    keep the checkpoint's."""
    import torch

    from espnet_omni.search.bn_calib import batchnorm_layers
    from espnet_omni.search.subnet_eval import calibrate_subnet
    from espnet_omni.sparsity.subnet import SubnetConfig
    from espnet_omni.tasks import OmniASRTask

    conf = yaml.safe_load(open("exp/supernet/config.yaml"))
    conf["omni_conf"] = {"dual_mode": {"streaming_sparsity": 0.5}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    common = ["--asr_train_config", str(tmp_path / "config.yaml"), "--asr_model_file",
              "exp/supernet/valid.loss.best.pth", "--data_dir", str(VALID), "--decode_name", "dec",
              "--chunk_size", "4", "--inference_config", str(DECODE)]
    dual_mode_eval.main(common + ["--out_dir", str(tmp_path / "plain")])
    dual_mode_eval.main(common + ["--out_dir", str(tmp_path / "calib"), "--calibration_dir", "data/train",
                                  "--calibration_utts", "4"])

    def running_mean(path: Path) -> torch.Tensor:
        state = torch.load(path, weights_only=True)
        return torch.cat([v.flatten() for k, v in state.items() if k.endswith("running_mean")])

    ckpt, args = OmniASRTask.build_model_from_file(tmp_path / "config.yaml", "exp/supernet/valid.loss.best.pth", "cpu")
    assert batchnorm_layers(ckpt), "the tiny supernet has BatchNorm in its conv module"
    for mode, enc_mode, s in (("full", "full", 0.0), ("stream", "streaming", 0.5)):
        calib = json.loads((tmp_path / f"calib/export_{mode}/export.json").read_text())["bn_calibration"]
        assert calib["mode"] == enc_mode and calib["utts"] == 4 and calib["layers"] > 0, calib
        assert json.loads((tmp_path / f"plain/export_{mode}/export.json").read_text())["bn_calibration"] == {}
        # the calibrated export holds what calibrating that network in its mode gives
        model, _ = OmniASRTask.build_model_from_file(tmp_path / "config.yaml", "exp/supernet/valid.loss.best.pth", "cpu")
        enc = model.encoder
        calibrate_subnet(model, args, SubnetConfig.uniform(enc.prunable_layers(), s, enc.mask_spec),
                         "data/train", 4, mode=enc_mode)
        want = torch.cat([m.running_mean.flatten() for m in batchnorm_layers(model)])
        torch.testing.assert_close(running_mean(tmp_path / f"calib/export_{mode}/model.pth"), want)
        assert not torch.allclose(running_mean(tmp_path / f"plain/export_{mode}/model.pth"), want)


def test_full_context_decoding_fuses_the_lm_or_refuses_an_lm_config_without_one(tmp_path):
    """An inference config tuned with the LM (lm_weight > 0, its length penalty) decodes with the LM
    given, and without one is refused: ESPnet would silently drop the LM and keep the penalty (the
    cause of Table B's full-context column being decoded without the LM before)."""
    import pytest

    lm_conf = Path(__file__).resolve().parents[2] / "conf" / "decode_ctc_lm.yaml"
    assert yaml.safe_load(lm_conf.read_text())["lm_weight"] > 0
    parse = dual_mode_eval.get_parser().parse_args
    base = ["--asr_train_config", "c.yaml", "--asr_model_file", "m.pth", "--data_dir", "d", "--out_dir", "o",
            "--inference_config", str(lm_conf)]
    with pytest.raises(SystemExit, match="fuses a language model .* no --lm_train_config/--lm_file"):
        dual_mode_eval.full_decode_options(parse(base))
    (tmp_path / "lm.yaml").write_text("{}\n")
    (tmp_path / "lm.pth").write_bytes(b"")
    conf = dual_mode_eval.full_decode_options(parse(base + ["--lm_train_config", str(tmp_path / "lm.yaml"),
                                                            "--lm_file", str(tmp_path / "lm.pth")]))
    assert conf["lm_file"] == str(tmp_path / "lm.pth") and conf["lm_weight"] > 0
    with pytest.raises(SystemExit, match="both --lm_train_config and --lm_file"):
        dual_mode_eval.full_decode_options(parse(base + ["--lm_file", str(tmp_path / "lm.pth")]))
    assert "lm_file" not in dual_mode_eval.full_decode_options(parse(base[:-2] + ["--inference_config", str(DECODE)]))


def test_streaming_search_decodes_the_chunk_by_chunk_encoder_output(in_root, tmp_path):
    """export_stream/<decode_name>/: the streaming network with --inference_config (ESPnet's search, the
    LM when given), over the encoder output chunk-by-chunk streaming computes: same sub-network, same
    re-estimated BatchNorm statistics, same chunk config (the --chunk_size override)."""
    import numpy as np
    import torch

    from espnet2.fileio.sound_scp import SoundScpReader
    from espnet_omni.inference.streaming_recognizer import StreamingRecognizer
    from espnet_omni.search.subnet_eval import calibrate_subnet
    from espnet_omni.nets.chunk_config import StreamingConfig
    from espnet_omni.sparsity.subnet import SubnetConfig
    from espnet_omni.tasks import OmniASRTask

    conf = yaml.safe_load(open("exp/supernet/config.yaml"))
    conf["omni_conf"] = {"dual_mode": {"streaming_sparsity": None}}  # an omni supernet: none fixed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    out = tmp_path / "table_b"
    dual_mode_eval.main(["--asr_train_config", str(tmp_path / "config.yaml"),
                         "--asr_model_file", "exp/supernet/valid.loss.best.pth", "--data_dir", str(VALID),
                         "--out_dir", str(out), "--decode_name", "dec", "--chunk_size", "4",
                         "--inference_config", str(DECODE), "--modes", "stream", "--stream_sparsity", "0.5",
                         "--calibration_dir", "data/train", "--calibration_utts", "4"])
    assert not (out / "export_full").exists()  # --modes stream: the streaming network only
    assert yaml.safe_load((out / "subnet_stream.yaml").read_text())["sparsities"]
    hyps = (out / "export_stream/dec" / VALID.name / "text").read_text().splitlines()
    assert [h.split()[0] for h in hyps] == ["valid_utt0", "valid_utt1"]

    # what the search saw: rebuild it as dual_mode_eval does, and compare its encoder output with
    # the chunk-by-chunk recognizer's frames on the calibrated 50% network
    model, args = OmniASRTask.build_model_from_file(tmp_path / "config.yaml", "exp/supernet/valid.loss.best.pth", "cpu")
    model.eval()
    sub = SubnetConfig.from_yaml(out / "subnet_stream.yaml")
    calibrate_subnet(model, args, sub, "data/train", 4, mode="streaming")  # as dual_mode_eval did
    model.encoder.set_active_subnet(sub)
    cfg = StreamingConfig.from_dict({**model.encoder.streaming_config.to_dict(), "chunk_size": 4})
    s2t = dual_mode_eval.streaming_speech2text(model, tmp_path / "config.yaml", Path("exp/supernet/valid.loss.best.pth"),
                                               cfg, yaml.safe_load(DECODE.read_text()))
    _, (_, wav) = next(iter(SoundScpReader(str(VALID / "wav.scp"), dtype="float32").items()))
    rec = StreamingRecognizer(model, None, 1, args)
    rec.set_streaming_config(cfg)
    rec.feed(wav)
    rec.finish()
    with torch.no_grad():
        speech = torch.from_numpy(np.asarray(wav))[None]
        enc, _ = s2t.asr_model.encode(speech, torch.tensor([speech.shape[1]]))
    torch.testing.assert_close(enc[0], rec.encoder_output(), atol=1e-4, rtol=1e-4)


def test_bad_stream_sparsity_is_refused(in_root, tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="--stream_sparsity 1.0"):
        dual_mode_eval.main(["--asr_train_config", "exp/supernet/config.yaml", "--asr_model_file",
                             "exp/supernet/valid.loss.best.pth", "--data_dir", str(VALID), "--out_dir",
                             str(tmp_path), "--stream_sparsity", "1.0"])
