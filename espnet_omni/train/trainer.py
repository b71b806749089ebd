"""OmniTrainer: ESPnet's Trainer plus the place where supernet training goes.

For now it trains exactly like ``espnet2.train.trainer.Trainer``; it only adds
the ``--omni_*`` option group and its typed options dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses

from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass


@dataclasses.dataclass
class OmniTrainerOptions(TrainerOptions):
    """ESPnet's trainer options plus ours (every field of ours is ``omni_*``).

    Attributes:
        omni_num_subnets: sub-networks forwarded (and their gradients
            accumulated) per mini-batch before the optimizer step.
            1 = plain ESPnet training, the only value implemented so far.
    """

    omni_num_subnets: int = 1

    def __post_init__(self) -> None:
        if self.omni_num_subnets < 1:
            raise ValueError(
                f"--omni_num_subnets {self.omni_num_subnets}: must be >= 1"
            )
        if self.omni_num_subnets != 1:
            raise NotImplementedError(
                f"--omni_num_subnets {self.omni_num_subnets}: supernet steps are "
                "not implemented yet; only 1 (plain training) is supported"
            )


class OmniTrainer(Trainer):
    """ESPnet Trainer subclass; the seams found in ESPnet 202611.

    How options reach the trainer:
        ``AbsTask.get_parser`` calls ``cls.trainer.add_arguments(parser)``
        (ESPnet's is a no-op), so our ``--omni_*`` flags and YAML keys live in
        :meth:`add_arguments`. ``AbsTask.main_worker`` then calls
        ``cls.trainer.build_options(args)``, which copies the namespace fields
        named like the dataclass fields (``build_dataclass``) into
        :class:`OmniTrainerOptions`, and passes it as ``trainer_options`` to
        ``cls.trainer.run(...)``; ``run`` hands it on as ``options`` to
        ``cls.train_one_epoch`` and ``cls.validate_one_epoch``. To add an
        option: one dataclass field + one ``add_argument`` with the same name.
        The namespace also lands in ``<output_dir>/config.yaml``.

    Where the supernet step goes:
        Every method is a classmethod called through ``cls``, so overriding
        works. ``Trainer.train_one_epoch`` holds forward (``model(**batch)``),
        ``loss /= accum_grad``, backward, and every ``accum_grad``-th batch
        grad clip + ``optimizer.step()`` + batch-step schedulers, in one loop
        with no per-batch hook: several sub-networks per step (sandwich rule,
        in-place distillation, per-subnet stats) means overriding
        ``train_one_epoch`` (loop over subnets around forward/backward, then
        the unchanged step block). ``model`` there is the task's model
        (wrapped in DDP when distributed: use ``model.module``). Mask updates
        every N steps fit right after ``optimizer.step()`` there.
        ``validate_one_epoch`` (under ``torch.no_grad``) is the seam for
        per-subnet validation: stats keys go to the reporter, and
        ``--best_model_criterion valid <key> min|max`` can select on them.

    Quirks:
        ``--use_deepspeed true`` is refused by ESPnet for any trainer other
        than its own (``AbsTask.main_worker``).
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
            "--omni_num_subnets",
            type=int,
            default=1,
            help="Sub-networks forwarded per mini-batch before the optimizer "
            "step (1 = plain ESPnet training; the only value implemented yet)",
        )
