"""The one place where espnet_omni registers into ESPnet.

Importing this package defines our task classes; it never mutates ESPnet's
module-level registries (see :mod:`espnet_omni.tasks.registry`). Our classes
are listed in :mod:`espnet_omni.tasks.entries`.

Public API:
    OmniASRTask, OmniSSLTask: ESPnet task subclasses (our choices, our trainer).
    as_omni_config: a stock Conformer training config as an omni_conformer one.
    ASR_CHOICES, SSL_CHOICES: their :class:`ChoiceTable` (query, register).
    ChoiceEntry, ChoiceTable: the table types.
    OmniSpeech2Text, omni_asr_inference: ESPnet ASR inference through OmniASRTask.
    ModelFileError: a missing or broken config/model file (build_model_from_file).
"""

from espnet_omni.tasks.asr import ASR_CHOICES, OmniASRTask, as_omni_config
from espnet_omni.tasks.checkpoint import ModelFileError
from espnet_omni.tasks.registry import ChoiceEntry, ChoiceTable
from espnet_omni.tasks.speech2text import OmniSpeech2Text, omni_asr_inference
from espnet_omni.tasks.ssl import SSL_CHOICES, OmniSSLTask

__all__ = [
    "ASR_CHOICES",
    "SSL_CHOICES",
    "ChoiceEntry",
    "ChoiceTable",
    "ModelFileError",
    "OmniASRTask",
    "OmniSSLTask",
    "OmniSpeech2Text",
    "as_omni_config",
    "omni_asr_inference",
]
