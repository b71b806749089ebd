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
from espnet2.fileio.read_text import read_2columns_text
from espnet2.tasks.asr import ASRTask

from espnet_omni.corpus.audio_check import require_complete, require_finite
from espnet_omni.corpus.noise_rir import check_scp
from espnet_omni.tasks.checkpoint import ModelFileError, check_model_files, readable_checkpoints
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
    def build_model_from_file(cls, config_file=None, model_file=None, device: str = "cpu"):
        """ESPnet's build_model_from_file: ``(model, train_args)``.

        Raises:
            ModelFileError: naming ``config_file`` or ``model_file``: missing
                (checked before the model is built), or the checkpoint
                truncated or not one (:func:`~espnet_omni.tasks.checkpoint.load_checkpoint`).
        """
        check_model_files(config_file, model_file)
        with readable_checkpoints():
            return super().build_model_from_file(config_file, model_file, device)

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
        to an empty text without a word) or, read from a ``sound`` wav.scp,
        whose file has no samples or is cut short (ESPnet would decode the
        part present as if whole: :func:`require_complete`).
        """
        loader = super().build_streaming_iterator(*args, **kwargs)
        if not kwargs.get("inference"):
            return loader
        data = args[0] if args else kwargs.get("data_path_and_name_and_type", ())
        return _checked_speech(loader, _speech_scp(data))


def _speech_scp(data_path_and_name_and_type) -> tuple[str, dict] | None:
    """``(wav.scp, {utt: file})`` of the ``speech`` input when it is of type ``sound``, else None."""
    for path, name, kind in data_path_and_name_and_type:
        if name == "speech" and kind == "sound":
            return str(path), read_2columns_text(path)
    return None


def _checked_speech(loader, scp: tuple[str, dict] | None):
    """``loader``'s ``(keys, batch)``: each utterance's file checked by :func:`require_complete`
    (with ``scp``, ``(wav.scp, {utt: file})``), its ``speech`` by :func:`require_finite`."""
    for keys, batch in loader:
        speech, lengths = batch.get("speech"), batch.get("speech_lengths")
        for i, key in enumerate(keys if speech is not None else ()):
            if scp is not None and key in scp[1]:
                require_complete(scp[1][key], key, scp[0])
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
        ModelFileError: (a ValueError) the file is missing or not an ASR
            training config (no ``encoder``).
    """
    import yaml

    path = Path(asr_train_config)
    check_model_files(path, None)
    with path.open(encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if not isinstance(conf, dict) or "encoder" not in conf:
        raise ModelFileError(f"{path}: not an ESPnet ASR training config (no 'encoder' key)")
    if conf["encoder"] != "conformer":
        return path
    conf["encoder"] = "omni_conformer"
    out = path.with_name(path.stem + ".omni.yaml")
    with out.open("w", encoding="utf-8") as f:
        yaml.safe_dump(conf, f, sort_keys=False)
    return out
