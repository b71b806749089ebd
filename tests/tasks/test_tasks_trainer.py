"""OmniTrainer options flow: argparse -> OmniTrainerOptions, through our task."""

from __future__ import annotations

import dataclasses
import io

import pytest
import yaml
from espnet2.train.trainer import Trainer, TrainerOptions

from espnet_omni.tasks import OmniASRTask, OmniSSLTask
from espnet_omni.train.trainer import OmniTrainer, OmniTrainerOptions


def _options(*cmd: str) -> OmniTrainerOptions:
    args = OmniASRTask.get_parser().parse_args(["--output_dir", "unused", *cmd])
    return OmniASRTask.trainer.build_options(args)


def test_trainer_is_ours_and_an_espnet_trainer():
    assert OmniASRTask.trainer is OmniTrainer and OmniSSLTask.trainer is OmniTrainer
    assert issubclass(OmniTrainer, Trainer)
    assert issubclass(OmniTrainerOptions, TrainerOptions)


def test_options_carry_espnet_and_omni_fields():
    opts = _options("--max_epoch", "3")
    assert isinstance(opts, OmniTrainerOptions)
    assert opts.max_epoch == 3 and opts.omni_conf == {} and opts.supernet is None
    espnet_fields = {f.name for f in dataclasses.fields(TrainerOptions)}
    ours = {f.name for f in dataclasses.fields(OmniTrainerOptions)} - espnet_fields
    assert ours and all(name.startswith("omni_") for name in ours)


@pytest.mark.parametrize(
    "conf, match",
    [
        ("{sampler: {rule: zigzag}}", "rule='zigzag' is not one of"),
        ("{sampler: {rule: sandwich, num_subnets: 1}}", "num_subnets=1 is outside"),
        ("{tie: per_head}", "tie='per_head' is not one of"),
        ("{mask_update_interval: 0}", "mask_update_interval=0"),
        ("{valid_sparsities: [0.0, 1.2]}", "outside the valid range"),
        ("{sampler_rule: sandwich}", "sampler_rule"),
        ("{schedule: {final_sparsity: 0.5, end_step: 0}}", "end_step=0"),
        ("{split_batch: true, distill_weight: 1.0}", "split_batch: true and distill_weight=1.0"),
        ("{split_batch: 2}", "split_batch=2 must be true or false"),
    ],
)
def test_bad_omni_conf_raises_naming_the_key(conf, match):
    with pytest.raises(ValueError, match=match):
        _options("--omni_conf", conf)


def test_omni_conf_parses_into_a_supernet_config():
    opts = _options("--omni_conf", "{sampler: {rule: uniform, num_subnets: 2}, distill_weight: 0.5}")
    assert opts.supernet.sampler.k == 2 and opts.supernet.distill_weight == 0.5


def test_print_config_lists_omni_options():
    out = io.StringIO()
    OmniASRTask.print_config(file=out)
    config = yaml.safe_load(out.getvalue())
    assert config["omni_conf"] == {}
