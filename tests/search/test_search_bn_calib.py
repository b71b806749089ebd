"""BatchNorm recalibration: the verb on a toy module, then in the search's
scoring and in the export of the tiny supernet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from espnet_omni.bin.export import main as export_main
from espnet_omni.search.bn_calib import batchnorm_layers, kept_batchnorm_stats, recalibrate_batchnorm
from espnet_omni.search.subnet_eval import SubnetEvaluator, calibrate_subnet
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.tasks import OmniASRTask

TRAIN, VALID = Path("data/train"), Path("data/valid")
EXP = Path("exp/supernet")


def _toy() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv1d(3, 4, 1), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(4))


def test_statistics_are_the_average_of_the_batches_statistics():
    net = _toy()
    net.train()  # recalibration must not leave anything in training mode
    batches = [torch.randn(2, 3, 7) * 3 + 1, torch.randn(5, 3, 4) - 2]
    assert recalibrate_batchnorm(net, batches, net) == 1
    bn = net[2]
    with torch.no_grad():  # dropout was off: the conv output is what the BatchNorm saw
        outs = [net[0](x).transpose(0, 1).reshape(4, -1) for x in batches]
    means = torch.stack([o.mean(1) for o in outs]).mean(0)
    vars_ = torch.stack([o.var(1, unbiased=True) for o in outs]).mean(0)
    torch.testing.assert_close(bn.running_mean, means)
    torch.testing.assert_close(bn.running_var, vars_)
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 2
    assert not any(m.training for m in net.modules())


def test_no_batches_is_refused_before_anything_changes():
    net = _toy()
    before = net[2].running_mean.clone()
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batchnorm(net, [], net)
    torch.testing.assert_close(net[2].running_mean, before)


def test_a_model_without_batchnorm_is_not_run():
    net = torch.nn.Linear(2, 2)
    calls = []
    assert recalibrate_batchnorm(net, [torch.zeros(1, 2)], calls.append) == 0
    assert calls == []


def test_kept_statistics_are_restored():
    net = _toy()
    before = [t.clone() for t in (net[2].running_mean, net[2].running_var)]
    with kept_batchnorm_stats(net):
        recalibrate_batchnorm(net, [torch.randn(2, 3, 5) + 4], net)
        assert not torch.equal(net[2].running_mean, before[0])
    torch.testing.assert_close(net[2].running_mean, before[0])
    torch.testing.assert_close(net[2].running_var, before[1])


def _half(model) -> SubnetConfig:
    enc = model.encoder
    return SubnetConfig.uniform(enc.prunable_layers(), 0.5, enc.mask_spec)


def _fresh():
    model, args = OmniASRTask.build_model_from_file(EXP / "config.yaml", EXP / "valid.loss.best.pth", "cpu")
    return model.eval(), args


def test_evaluator_scores_each_candidate_recalibrated_and_restores(model_and_args):
    model, args = model_and_args
    assert batchnorm_layers(model), "the tiny supernet has no BatchNorm: the test would prove nothing"
    stats = [m.running_var.clone() for m in batchnorm_layers(model)]
    cfg = _half(model)
    ev = SubnetEvaluator(model, VALID, train_args=args, calibration_dir=TRAIN, calibration_utts=8)
    assert len(ev.calibration_batches) > 0
    got = ev.decode_all(cfg), ev.mean_loss(cfg)
    for m, v in zip(batchnorm_layers(model), stats):  # the evaluator's model is unchanged
        torch.testing.assert_close(m.running_var, v)
    # Reference: calibrate a copy by hand, then score it without calibration.
    ref_model, _ = _fresh()
    assert calibrate_subnet(ref_model, args, cfg, TRAIN, 8) == (len(stats), 8)
    changed = [not torch.allclose(m.running_var, v) for m, v in zip(batchnorm_layers(ref_model), stats)]
    assert all(changed), "calibration left some statistics as they were"
    plain = SubnetEvaluator(ref_model, VALID, train_args=args)
    with kept_batchnorm_stats(ref_model):
        want = plain.decode_all(cfg), plain.mean_loss(cfg)
    assert got[0] == want[0]
    assert got[1] == pytest.approx(want[1], rel=1e-5)
    uncalibrated = SubnetEvaluator(model, VALID, train_args=args).mean_loss(cfg)
    assert uncalibrated != pytest.approx(got[1], rel=1e-5), "calibration changed nothing"


def test_export_carries_the_recalibrated_statistics(in_root, tmp_path):
    model, args = _fresh()
    cfg = _half(model)
    subnet_yaml = tmp_path / "subnet.yaml"
    cfg.to_yaml(subnet_yaml)
    out = tmp_path / "export"
    export_main(["--asr_train_config", str(EXP / "config.yaml"), "--asr_model_file",
                 str(EXP / "valid.loss.best.pth"), "--subnet", str(subnet_yaml), "--format", "dense",
                 "--out_dir", str(out), "--calibration_dir", str(TRAIN), "--calibration_utts", "6"])
    report = json.loads((out / "export.json").read_text())
    assert report["bn_calibration"] == {"data_dir": str(TRAIN), "utts": 6, "layers": len(batchnorm_layers(model)),
                                     "mode": "full"}
    calibrate_subnet(model, args, cfg, TRAIN, 6)
    exported = torch.load(out / "model.pth", map_location="cpu")
    for name, value in model.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(exported[name], value, msg=name)
    # The exported model computes what the recalibrated, masked supernet computes.
    ex_model, _ = OmniASRTask.build_model_from_file(out / "config.yaml", out / "model.pth", "cpu")
    wav = torch.randn(1, 9000)
    lens = torch.tensor([9000])
    with torch.no_grad():
        torch.testing.assert_close(ex_model.eval().encode(wav, lens)[0], model.encode(wav, lens)[0],
                                   rtol=1e-4, atol=1e-5)
