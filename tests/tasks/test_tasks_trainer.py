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
    assert opts.max_epoch == 3 and opts.omni_num_subnets == 1
    espnet_fields = {f.name for f in dataclasses.fields(TrainerOptions)}
    ours = {f.name for f in dataclasses.fields(OmniTrainerOptions)} - espnet_fields
    assert ours and all(name.startswith("omni_") for name in ours)


@pytest.mark.parametrize(
    "value, error", [("0", ValueError), ("2", NotImplementedError)]
)
def test_bad_omni_num_subnets_raises_naming_the_flag(value, error):
    with pytest.raises(error, match="--omni_num_subnets"):
        _options("--omni_num_subnets", value)


def test_print_config_lists_omni_options():
    out = io.StringIO()
    OmniASRTask.print_config(file=out)
    config = yaml.safe_load(out.getvalue())
    assert config["omni_num_subnets"] == 1
