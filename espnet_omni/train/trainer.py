"""OmniTrainer: ESPnet's Trainer plus supernet steps.

With an empty ``--omni_conf`` (the default) it trains exactly like
``espnet2.train.trainer.Trainer``. With an ``omni_conf`` and a supernet
encoder (one with the supernet verbs, e.g. ``omni_conformer``) every
mini-batch is replayed once per sub-network of the step and ESPnet's
gradient accumulation sums them (see :mod:`espnet_omni.train.supernet`).

Seams of ESPnet 202611 used here:
    ``AbsTask.get_parser`` calls ``cls.trainer.add_arguments(parser)``, so our
    ``--omni_*`` flags and YAML keys live in :meth:`add_arguments`;
    ``cls.trainer.build_options(args)`` copies namespace fields named like
    the dataclass fields into :class:`OmniTrainerOptions`, handed to
    ``train_one_epoch`` / ``validate_one_epoch`` as ``options``. To add an
    option: one dataclass field + one ``add_argument`` of the same name.
    ``--use_deepspeed true`` is refused by ESPnet for any trainer but its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from pathlib import Path
from typing import Optional

import torch
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.recursive_op import recursive_average
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet_omni.train.supernet import (
    SupernetConfig,
    SupernetState,
    TaggedModel,
    log_plan,
    replay,
    reset,
    supernet_encoder,
    valid_subnets,
    validation_stats,
)


@dataclasses.dataclass
class OmniTrainerOptions(TrainerOptions):
    """ESPnet's trainer options plus ours (every field of ours is ``omni_*``).

    Attributes:
        omni_conf: the supernet training mapping (see
            :class:`espnet_omni.train.supernet.SupernetConfig`); empty = plain
            ESPnet training.
    """

    omni_conf: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.supernet: Optional[SupernetConfig] = SupernetConfig.from_dict(self.omni_conf)


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _add_compute(output_dir: Optional[Path], cpu: float, wall: float, k: int, passes: int,
                 distributed: bool = False) -> None:
    """Accumulate the compute of one finished training epoch in compute.json.

    ``k``: sub-networks per step; ``passes``: forward+backward passes over the
    training set per epoch (``k``, or 1 when the K sub-networks split each
    mini-batch).

    Distributed: the CPU seconds are summed over all processes and rank 0
    alone writes the file (wall time: rank 0's)."""
    if distributed and torch.distributed.is_initialized():
        total = torch.tensor([cpu], dtype=torch.float64)
        torch.distributed.all_reduce(total, torch.distributed.ReduceOp.SUM)
        if torch.distributed.get_rank() != 0:
            return
        cpu = float(total.item())
    if output_dir is None:
        return
    path = Path(output_dir) / "compute.json"
    d = json.loads(path.read_text()) if path.exists() else {}
    d["train_cpu_seconds"] = d.get("train_cpu_seconds", 0.0) + cpu
    d["train_wall_seconds_epochs"] = d.get("train_wall_seconds_epochs", 0.0) + wall
    d["epochs_counted"] = d.get("epochs_counted", 0) + 1
    d["subnets_per_step"] = k
    d["passes_per_epoch"] = passes
    # CPU seconds grow with the thread count (2 threads: ~1.3x faster, ~1.5x the CPU
    # seconds here), so runs compare by CPU seconds only at equal threads.
    threads = sorted(set(d.get("torch_threads", [])) | {torch.get_num_threads()})
    d["torch_threads"] = threads
    path.write_text(json.dumps(d, indent=1))


class OmniTrainer(Trainer):
    """ESPnet Trainer with supernet steps and compute accounting.

    Every training epoch adds its CPU seconds (all threads of this process,
    plus finished data-loader workers) to ``<output_dir>/compute.json``: the
    training-compute column of the results tables.
    """

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> OmniTrainerOptions:
        """Namespace -> :class:`OmniTrainerOptions` (validated)."""
        return build_dataclass(OmniTrainerOptions, args)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add the ``--omni_*`` trainer options (one group, one place)."""
        group = parser.add_argument_group("Omni supernet trainer related")
        group.add_argument(
            "--omni_conf",
            action=NestedDictAction,
            default=dict(),
            help="Supernet training (espnet_omni.train.supernet.SupernetConfig): "
            "sampler {rule: sandwich|uniform|fixed|dense, num_subnets, fixed}, choices, tie, "
            "distill_weight, mask_update_interval, schedule {final_sparsity, begin_step, "
            "end_step}, valid_sparsities, seed, dual_mode, split_batch. Empty = plain ESPnet training.",
        )

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter,
                        summary_writer, options, distributed_option) -> bool:
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        cfg = getattr(options, "supernet", None)
        encoder = supernet_encoder(model)
        k, passes = 1, 1
        if cfg is None or encoder is None:
            if cfg is not None:
                raise ValueError("omni_conf is set but the encoder has no supernet verbs (use an omni_* encoder)")
            invalid = super().train_one_epoch(model, iterator, optimizers, schedulers, scaler, reporter,
                                              summary_writer, options, distributed_option)
        else:
            state = SupernetState(cfg, encoder, options.accum_grad)
            k = state.k
            passes = 1 if cfg.split_batch else k
            log_plan(state)
            tagged = TaggedModel(model, state)
            replayed = replay(iterator, state, reporter.get_total_count())
            # ESPnet's accumulation over K * accum_grad micro-steps = one supernet step.
            opts = dataclasses.replace(options, accum_grad=options.accum_grad * k)
            try:
                invalid = super().train_one_epoch(tagged, replayed, optimizers, schedulers, scaler, reporter,
                                                  summary_writer, opts, distributed_option)
            finally:
                tagged.remove_hooks()
                reset(encoder)
        _add_compute(options.output_dir, _cpu_seconds() - cpu0, time.perf_counter() - wall0, k, passes,
                     distributed_option.distributed)
        return invalid

    @classmethod
    @torch.no_grad()
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option) -> None:
        cfg = getattr(options, "supernet", None)
        encoder = supernet_encoder(model)
        if cfg is None or encoder is None:
            return super().validate_one_epoch(model, iterator, reporter, options, distributed_option)
        subnets = valid_subnets(encoder, cfg)
        encoder.refresh_masks()
        model.eval()
        distributed = distributed_option.distributed
        iterator_stop = torch.tensor(0).to("cuda" if options.ngpu > 0 else "cpu")
        for utt_id, batch in iterator:
            if distributed:
                torch.distributed.all_reduce(iterator_stop, torch.distributed.ReduceOp.SUM)
                if iterator_stop > 0:
                    break
            batch["utt_id"] = utt_id
            batch = to_device(batch, "cuda" if options.ngpu > 0 else "cpu")
            stats, weight = validation_stats(model, batch, encoder, subnets)
            if options.ngpu > 1 or distributed:
                stats, weight = recursive_average(stats, weight, distributed)
            reporter.register(stats, weight)
            reporter.next()
        else:
            if distributed:
                iterator_stop.fill_(1)
                torch.distributed.all_reduce(iterator_stop, torch.distributed.ReduceOp.SUM)
