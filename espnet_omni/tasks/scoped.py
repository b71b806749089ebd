"""Scoped replacement of module attributes: the one patching tool we use.

ESPnet resolves some names through module globals rather than through the
task class: ``ASRTask.build_model`` reads ``espnet2.tasks.asr.encoder_choices``
and ``Speech2Text`` reads ``espnet2.bin.asr_inference.ASRTask``. To make those
code paths see our classes without changing ESPnet for anyone else, we swap
the global for the duration of one call and put it back afterwards.

Every value we install is a *superset* of what it replaces (our choices hold
all of ESPnet's classes plus ours; ``OmniASRTask`` is an ``ASRTask``), so a
stock caller that happens to run inside the window still works.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Iterator, Mapping

# Re-entrant: OmniSpeech2Text installs the task, whose build_model then
# installs the choices, on the same thread.
_LOCK = threading.RLock()


@contextmanager
def swapped_attributes(module: ModuleType, values: Mapping[str, Any]) -> Iterator[None]:
    """Set ``module.<name> = value`` for each item, restore them on exit.

    Args:
        module: the module whose globals are replaced.
        values: attribute name -> temporary value. Every name must already
            exist on ``module`` (a typo must not silently add a new global).

    Raises:
        AttributeError: a name is not an attribute of ``module``.
    """
    missing = [name for name in values if not hasattr(module, name)]
    if missing:
        raise AttributeError(
            f"{module.__name__} has no attribute(s) {missing}: this ESPnet "
            "version changed a seam espnet_omni.tasks relies on"
        )
    with _LOCK:
        saved = {name: getattr(module, name) for name in values}
        try:
            for name, value in values.items():
                setattr(module, name, value)
            yield
        finally:
            for name, value in saved.items():
                setattr(module, name, value)
