"""ESPnet's ASR inference (``Speech2Text``, ``inference``) through OmniASRTask.

``espnet2.bin.asr_inference`` hard-codes its task: ``Speech2Text.__init__``
calls ``ASRTask.build_model_from_file`` and ``inference()`` builds its data
loader with ``ASRTask.build_*``, all through that module's global ``ASRTask``.
:func:`omni_asr_inference` points that global at :class:`OmniASRTask` for the
duration of a block, so configs naming our classes load; outside the block
ESPnet is untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Optional

import espnet2.bin.asr_inference
from espnet2.bin.asr_inference import Speech2Text
from espnet2.utils.pretrained import download_pretrained

from espnet_omni.tasks.asr import OmniASRTask
from espnet_omni.tasks.scoped import swapped_attributes


@contextmanager
def omni_asr_inference() -> Iterator[None]:
    """Within the block, ``espnet2.bin.asr_inference`` uses OmniASRTask."""
    with swapped_attributes(espnet2.bin.asr_inference, {"ASRTask": OmniASRTask}):
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


def inference(**kwargs: Any) -> None:
    """``espnet2.bin.asr_inference.inference`` through OmniASRTask."""
    with omni_asr_inference():
        espnet2.bin.asr_inference.inference(**kwargs)
