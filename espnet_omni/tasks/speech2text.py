"""ESPnet's ASR inference (``Speech2Text``, ``inference``) through OmniASRTask.

``espnet2.bin.asr_inference`` hard-codes its task: ``Speech2Text.__init__``
calls ``ASRTask.build_model_from_file`` and ``inference()`` builds its data
loader with ``ASRTask.build_*``, all through that module's global ``ASRTask``.
:func:`omni_asr_inference` points that global at :class:`OmniASRTask` for the
duration of a block, so configs naming our classes load; outside the block
ESPnet is untouched. ``encoder_mode="streaming"`` also puts the built model's
encoder (an :class:`~espnet_omni.nets.omni_conformer.OmniConformerEncoder`) in
its streaming mode: chunked attention and causal convolutions on the whole
utterance, the same encoder output as chunk-by-chunk streaming, decoded by
ESPnet's beam search (with its CTC prefix scorer and LM).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import espnet2.bin.asr_inference
from espnet2.bin.asr_inference import Speech2Text
from espnet2.utils.pretrained import download_pretrained

from espnet_omni.tasks.asr import OmniASRTask
from espnet_omni.tasks.checkpoint import readable_checkpoints
from espnet_omni.tasks.scoped import swapped_attributes


ENCODER_MODES = ("full", "streaming")


class EncoderModeError(ValueError):
    """The model cannot run in the asked encoder mode (a stock encoder asked to stream)."""


def _task_in_mode(encoder_mode: str) -> type:
    """OmniASRTask, or a subclass whose built models have their encoder in ``encoder_mode``."""
    if encoder_mode not in ENCODER_MODES:
        raise ValueError(f"encoder_mode={encoder_mode!r}: must be one of {ENCODER_MODES}")
    if encoder_mode == "full":
        return OmniASRTask

    class StreamingModeTask(OmniASRTask):
        @classmethod
        def build_model_from_file(cls, config_file=None, model_file=None, device="cpu"):
            model, args = super().build_model_from_file(config_file, model_file, device)
            if not hasattr(model.encoder, "set_active_mode"):
                raise EncoderModeError(
                    f"--encoder_mode streaming needs a streaming-capable encoder (encoder: omni_conformer); "
                    f"{config_file} has {type(model.encoder).__name__}")
            model.encoder.set_active_mode("streaming")
            return model, args

    return StreamingModeTask


@contextmanager
def omni_asr_inference(encoder_mode: str = "full") -> Iterator[None]:
    """Within the block, ``espnet2.bin.asr_inference`` uses OmniASRTask (its models'
    encoders in ``encoder_mode``: ``full`` or ``streaming``); a broken checkpoint,
    the LM's too, is a :class:`~espnet_omni.tasks.checkpoint.ModelFileError` naming it."""
    task = _task_in_mode(encoder_mode)
    with swapped_attributes(espnet2.bin.asr_inference, {"ASRTask": task}), readable_checkpoints():
        yield


class OmniSpeech2Text(Speech2Text):
    """``Speech2Text`` that builds its model with :class:`OmniASRTask`.

    Same arguments as ESPnet's (``asr_train_config``, ``asr_model_file``,
    ``ctc_weight``, ``beam_size``, ...). Call it on a waveform ``(T,)`` to get
    ``[(text, tokens, token_ids, hyp), ...]`` (n-best).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with omni_asr_inference():
            super().__init__(*args, **kwargs)

    @staticmethod
    def from_pretrained(
        model_tag: Optional[str] = None, **kwargs: Any
    ) -> "OmniSpeech2Text":
        """Like ESPnet's; ``model_tag`` may be a packed ``.zip`` on disk."""
        if model_tag is not None:
            kwargs.update(download_pretrained(model_tag))
        return OmniSpeech2Text(**kwargs)

