"""OmniASRTask: ESPnet's ASRTask with our classes and our trainer.

Every stock ASR option still works (``encoder: conformer``, ...); ours are
added from :mod:`espnet_omni.tasks.entries`. ``ASR_CHOICES`` is the public
table: ``ASR_CHOICES.choices("encoder").classes`` lists what ``--encoder``
accepts, ``ASR_CHOICES.register("encoder", key, cls)`` adds a class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import espnet2.tasks.asr
import humanfriendly
from espnet2.tasks.asr import ASRTask

from espnet_omni.corpus.audio_check import require_finite
from espnet_omni.corpus.noise_rir import check_scp
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
        """ESPnet's build_preprocess_fn, resolving ``--preprocessor`` via ours.

        The training's noise and RIR lists (``--noise_scp``, ``--rir_scp``) are
        checked first (:func:`noise_rir.check_scp`): ESPnet reads them lazily
        and would add a wrong-rate noise as it is, or fail mid-epoch on a
        missing file.
        """
        if train and args.use_preprocessor:
            fs = (getattr(args, "frontend_conf", None) or {}).get("fs", 16000)
            fs = humanfriendly.parse_size(fs) if isinstance(fs, str) else int(fs)
            for name in ("noise_scp", "rir_scp"):
                scp = getattr(args, name, None)
                if scp is not None:
                    check_scp(Path(scp), fs)
        with ASR_CHOICES.installed():
            return super().build_preprocess_fn(args, train)

    @classmethod
    def build_streaming_iterator(cls, *args, **kwargs):
        """ESPnet's build_streaming_iterator; with ``inference=True`` (decoding),
        the ``(keys, batch)`` it yields are checked first.

        Raises :class:`~espnet_omni.corpus.audio_check.BadAudioError` naming
        the utterance whose ``speech`` holds NaN or inf (ESPnet would decode it
        to an empty text without a word).
        """
        loader = super().build_streaming_iterator(*args, **kwargs)
        return _finite_speech(loader) if kwargs.get("inference") else loader


def _finite_speech(loader):
    """``loader``'s ``(keys, batch)``, each utterance's ``speech`` checked by :func:`require_finite`."""
    for keys, batch in loader:
        speech, lengths = batch.get("speech"), batch.get("speech_lengths")
        for i, key in enumerate(keys if speech is not None else ()):
            require_finite(speech[i] if lengths is None else speech[i, : int(lengths[i])], key)
        yield keys, batch


def as_omni_config(asr_train_config: str | Path) -> Path:
    """A training config whose encoder is ``omni_conformer``.

    ``asr_train_config`` itself unless it says ``encoder: conformer``; then a
    copy next to it (``<name>.omni.yaml``) saying ``encoder: omni_conformer``.
    A stock Conformer checkpoint loads into it (same parameter names) and, at
    sparsity 0 in full mode, computes the same function: so a stock model can
    be streamed, sized or exported like a supernet's dense network.

    Raises:
        ValueError: the file is not an ASR training config (no ``encoder``).
    """
    import yaml

    path = Path(asr_train_config)
    with path.open(encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if not isinstance(conf, dict) or "encoder" not in conf:
        raise ValueError(f"{path}: not an ESPnet ASR training config (no 'encoder' key)")
    if conf["encoder"] != "conformer":
        return path
    conf["encoder"] = "omni_conformer"
    out = path.with_name(path.stem + ".omni.yaml")
    with out.open("w", encoding="utf-8") as f:
        yaml.safe_dump(conf, f, sort_keys=False)
    return out
