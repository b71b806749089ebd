"""OmniTrainer: ESPnet's Trainer plus supernet steps.

With an empty ``--omni_conf`` (the default) it trains exactly like
``espnet2.train.trainer.Trainer``. With an ``omni_conf`` and a supernet
encoder (:func:`~espnet_omni.nets.omni_conformer.supernet_encoder`) every
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
    ``Trainer.run`` saves ``checkpoint.pth`` and ``<N>epoch.pth`` with its
    module's ``torch.save`` and resumes through ``cls.resume``: :meth:`run`
    makes those saves atomic, :meth:`resume` checks the checkpoint first.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import time
import types
from pathlib import Path
from typing import IO, Callable, Iterator, Optional, Union

import espnet2.train.trainer
import torch
from espnet2.torch_utils.device_funcs import to_device
from espnet2.torch_utils.recursive_op import recursive_average
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.nested_dict_action import NestedDictAction

from espnet_omni.nets.omni_conformer import supernet_encoder
from espnet_omni.train.supernet import (
    SupernetConfig,
    SupernetState,
    TaggedModel,
    log_plan,
    replay,
    reset,
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


def replace_atomically(path: Union[str, Path], write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` by ``write(binary file)`` into a temp file next to it, then rename.

    A kill mid-write leaves the old ``path`` (or none), never a truncated one;
    the temp file ``.<name>.tmp`` a kill leaves is overwritten next time."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _TorchSavingAtomically(types.ModuleType):
    """``torch`` as ESPnet's trainer module sees it inside :meth:`OmniTrainer.run`:
    every attribute is torch's, except that ``save`` to a path is atomic."""

    def __getattr__(self, name: str):
        return getattr(torch, name)

    @staticmethod
    def save(obj, f, *args, **kwargs) -> None:
        if isinstance(f, (str, os.PathLike)):
            replace_atomically(f, lambda fh: torch.save(obj, fh, *args, **kwargs))
        else:
            torch.save(obj, f, *args, **kwargs)


@contextlib.contextmanager
def _espnet_saves_atomically() -> Iterator[None]:
    """ESPnet's ``Trainer.run`` writes checkpoint.pth and <N>epoch.pth atomically inside."""
    module = espnet2.train.trainer
    before = module.torch
    module.torch = _TorchSavingAtomically("torch")
    try:
        yield
    finally:
        module.torch = before


class CheckpointUnreadableError(RuntimeError):
    """``checkpoint.pth`` cannot be loaded, so ``--resume true`` cannot go on."""


def _read_compute(path: Path) -> dict:
    """compute.json as a dict ({} when absent).

    Raises:
        ValueError: the file exists but is no JSON object (e.g. truncated by
            a kill of a version that wrote it in place); says what to do.
    """
    if not path.exists():
        return {}
    try:
        d = json.loads(path.read_text())
        if not isinstance(d, dict):
            raise ValueError(f"a JSON {type(d).__name__}, not an object")
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(
            f"{path}: unreadable ({e}); it is the compute record of this experiment's training. "
            f"Move it aside to go on (the record then counts only the epochs trained from now on)"
        ) from None
    return d


def _add_compute(output_dir: Optional[Path], epoch: int, cpu: float, wall: float, k: int, passes: int,
                 distributed: bool = False) -> None:
    """Record the compute of finished training epoch ``epoch`` in compute.json.

    ``k``: sub-networks per step; ``passes``: forward+backward passes over the
    training set per epoch (``k``, or 1 when the K sub-networks split each
    mini-batch).

    The record is keyed by epoch (``per_epoch``); the totals
    (``train_cpu_seconds``, ``train_wall_seconds_epochs``, ``epochs_counted``)
    are its sums. An epoch trained again (a resume after a kill between this
    record and the checkpoint) replaces its entry, and entries of later epochs
    (from an abandoned earlier run) are dropped. Totals of a record written
    before the per-epoch keys are kept as ``carried_over``. Written atomically.

    Distributed: the CPU seconds are summed over all processes and rank 0
    alone writes the file (wall time: rank 0's).

    Raises:
        ValueError: an unreadable existing compute.json (see :func:`_read_compute`).
    """
    if distributed and torch.distributed.is_initialized():
        total = torch.tensor([cpu], dtype=torch.float64)
        torch.distributed.all_reduce(total, torch.distributed.ReduceOp.SUM)
        if torch.distributed.get_rank() != 0:
            return
        cpu = float(total.item())
    if output_dir is None:
        return
    path = Path(output_dir) / "compute.json"
    d = _read_compute(path)
    if "epochs_counted" in d and "per_epoch" not in d:
        d["carried_over"] = {"cpu": d.get("train_cpu_seconds", 0.0), "wall": d.get("train_wall_seconds_epochs", 0.0),
                             "epochs": d["epochs_counted"]}
    per = {e: v for e, v in d.get("per_epoch", {}).items() if int(e) < epoch}
    per[str(epoch)] = {"cpu": cpu, "wall": wall}
    base = d.get("carried_over", {})
    d["train_cpu_seconds"] = base.get("cpu", 0.0) + sum(v["cpu"] for v in per.values())
    d["train_wall_seconds_epochs"] = base.get("wall", 0.0) + sum(v["wall"] for v in per.values())
    d["epochs_counted"] = base.get("epochs", 0) + len(per)
    d["per_epoch"] = dict(sorted(per.items(), key=lambda kv: int(kv[0])))
    d["subnets_per_step"] = k
    d["passes_per_epoch"] = passes
    # CPU seconds grow with the thread count (2 threads: ~1.3x faster, ~1.5x the CPU
    # seconds here), so runs compare by CPU seconds only at equal threads.
    threads = sorted(set(d.get("torch_threads", [])) | {torch.get_num_threads()})
    d["torch_threads"] = threads
    replace_atomically(path, lambda f: f.write(json.dumps(d, indent=1).encode()))


class OmniTrainer(Trainer):
    """ESPnet Trainer with supernet steps and compute accounting.

    Every training epoch records its CPU seconds (all threads of this process,
    plus finished data-loader workers) in ``<output_dir>/compute.json``: the
    training-compute column of the results tables. ``checkpoint.pth``,
    ``<N>epoch.pth`` and ``compute.json`` are written atomically (temp file,
    then rename), so a kill never leaves a truncated one.
    """

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        """``Trainer.run`` with atomic checkpoint saves.

        Raises:
            ValueError: ``<output_dir>/compute.json`` exists but is unreadable
                (checked before any epoch is trained).
            CheckpointUnreadableError: see :meth:`resume`.
        """
        _read_compute(Path(trainer_options.output_dir) / "compute.json")
        with _espnet_saves_atomically():
            super().run(model=model, optimizers=optimizers, schedulers=schedulers,
                        train_iter_factory=train_iter_factory, valid_iter_factory=valid_iter_factory,
                        plot_attention_iter_factory=plot_attention_iter_factory,
                        trainer_options=trainer_options, distributed_option=distributed_option)

    @staticmethod
    def resume(checkpoint: Union[str, Path], *args, **kwargs) -> None:
        """``Trainer.resume``, after checking that ``checkpoint`` loads.

        Raises:
            CheckpointUnreadableError: ``checkpoint`` does not load (e.g.
                truncated by a kill of a version that wrote it in place). The
                message names the file, the last ``<N>epoch.pth`` (model weights
                only, so no faithful resume from it) and what to do.
        """
        checkpoint = Path(checkpoint)
        try:
            torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip: RuntimeError; empty: EOFError; garbage: KeyError, ...
            reason = (str(e).strip().splitlines() or [""])[0].split(". ")[0]
            epochs = sorted(int(p.name[: -len("epoch.pth")]) for p in checkpoint.parent.glob("*epoch.pth")
                            if p.name[: -len("epoch.pth")].isdigit())
            last = (f" The last epoch's model weights are in {checkpoint.parent / f'{epochs[-1]}epoch.pth'}, "
                    f"without the optimizer, scheduler and reporter states a resume needs; --init_param "
                    f"starts a new training from them." if epochs else "")
            raise CheckpointUnreadableError(
                f"{checkpoint}: unreadable ({type(e).__name__}: {reason}), cannot resume from it.{last} "
                f"Move {checkpoint} aside to train again from epoch 1."
            ) from None
        Trainer.resume(checkpoint, *args, **kwargs)

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
            "distill_weight, distill_head, mask_update_interval, schedule {final_sparsity, begin_step, "
            "end_step}, valid_sparsities, seed, dual_mode, split_batch. Empty = plain ESPnet training.",
        )

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter,
                        summary_writer, options, distributed_option) -> bool:
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        cfg = getattr(options, "supernet", None)
        encoder = supernet_encoder(model, required=False)
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
        _add_compute(options.output_dir, reporter.get_epoch(), _cpu_seconds() - cpu0, time.perf_counter() - wall0,
                     k, passes, distributed_option.distributed)
        return invalid

    @classmethod
    @torch.no_grad()
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option) -> None:
        cfg = getattr(options, "supernet", None)
        encoder = supernet_encoder(model, required=False)
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
