"""OmniASRTask: ESPnet's ASRTask with our classes and our trainer.

Every stock ASR option still works (``encoder: conformer``, ...); ours are
added from :mod:`espnet_omni.tasks.entries`. ``ASR_CHOICES`` is the public
table: ``ASR_CHOICES.choices("encoder").classes`` lists what ``--encoder``
accepts, ``ASR_CHOICES.register("encoder", key, cls)`` adds a class.
"""

from __future__ import annotations

import argparse

import espnet2.tasks.asr
from espnet2.tasks.asr import ASRTask

from espnet_omni.tasks.entries import ASR_ENTRIES
from espnet_omni.tasks.registry import ChoiceTable
from espnet_omni.train.trainer import OmniTrainer

# ASRTask.class_choices_list in ESPnet's order; build_model and
# build_preprocess_fn read these as module globals of espnet2.tasks.asr.
_ASR_CHOICE_NAMES = tuple(c.name for c in ASRTask.class_choices_list)

ASR_CHOICES = ChoiceTable(espnet2.tasks.asr, _ASR_CHOICE_NAMES, ASR_ENTRIES)


class OmniASRTask(ASRTask):
    """ASRTask whose options include our classes and whose trainer is ours.

    ``ASRTask.build_model``/``build_preprocess_fn`` look classes up in the
    module globals of ``espnet2.tasks.asr``; we install our (superset)
    choices there for the duration of those calls only.
    """

    class_choices_list = ASR_CHOICES.class_choices_list(_ASR_CHOICE_NAMES)
    trainer = OmniTrainer

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        """ESPnet's build_model, resolving option names through our choices."""
        with ASR_CHOICES.installed():
            return super().build_model(args)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        """ESPnet's build_preprocess_fn, resolving ``--preprocessor`` via ours."""
        with ASR_CHOICES.installed():
            return super().build_preprocess_fn(args, train)
