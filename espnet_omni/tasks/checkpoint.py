"""Model files as ESPnet's ``build_model_from_file`` reads them, with errors that name them.

ESPnet opens the config and ``torch.load``\\ s the checkpoint bare: a missing
file is a ``FileNotFoundError`` traceback, and a truncated checkpoint (half a
copy) an ``OSError: [Errno 22] Invalid argument`` naming no file, or an
advice to load it unsafely. :func:`check_model_files` and
:func:`readable_checkpoints` turn both into a :class:`ModelFileError` naming
the file, which the ``espnet_omni.bin`` entries print as one line.
"""

from __future__ import annotations

import pickle
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

import espnet2.tasks.abs_task
import torch
from espnet2.torch_utils.safe_torch_load import UnsafeLoadRefusedError, safe_torch_load

from espnet_omni.tasks.scoped import swapped_attributes

PathLike = Union[str, Path]
MODEL_FILE = "a model file (.pth)"


class ModelFileError(ValueError):
    """A model or config file that is missing or cannot be loaded; the message names it."""


def check_model_files(config_file: Optional[PathLike], model_file: Optional[PathLike]) -> None:
    """Raise :class:`ModelFileError` naming a file of ``build_model_from_file`` that
    is not there: ``config_file`` (``None``: ESPnet's default, ``config.yaml``
    next to ``model_file``) and ``model_file`` (``None``: none is loaded)."""
    if config_file is None and model_file is not None:
        config_file = Path(model_file).parent / "config.yaml"
    if config_file is not None:
        _require_file(config_file, "the model's training config (config.yaml)")
    if model_file is not None:
        _require_file(model_file, MODEL_FILE)



def _require_file(path: PathLike, what: str) -> None:
    """Raise :class:`ModelFileError` unless ``path`` is a file."""
    if not Path(path).is_file():
        raise ModelFileError(f"{path}: {'a directory' if Path(path).is_dir() else 'not found'}; expected {what}")


def _is_torch_file(path: PathLike) -> bool:
    """Whether ``path`` looks like a whole ``torch.save`` output: a zip with its
    central directory (the format since PyTorch 1.6), or the legacy pickle's magic."""
    if zipfile.is_zipfile(path):
        return True
    magic = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


def load_checkpoint(path: PathLike, map_location=None, **kwargs):
    """ESPnet's ``safe_torch_load`` (``weights_only=True``), raising
    :class:`ModelFileError` naming ``path`` when it is not a loadable checkpoint.

    A whole checkpoint holding non-tensor objects still raises ESPnet's
    ``UnsafeLoadRefusedError`` (its opt-in advice is right for it, not for a
    broken file).

    Raises:
        ModelFileError: missing, a directory, truncated, or not a PyTorch checkpoint.
    """
    _require_file(path, MODEL_FILE)
    broken = (f"{path}: truncated or not a PyTorch checkpoint; expected a complete .pth written by "
              f"torch.save (an interrupted copy?)")
    if not _is_torch_file(path):  # a zip cut short has lost its central directory: OSError 22 in torch.load
        raise ModelFileError(broken)
    try:
        return safe_torch_load(path, map_location=map_location, **kwargs)
    except UnsafeLoadRefusedError as e:
        # torch.load's RuntimeError (a zip corrupted inside): not a refusal of unsafe content
        if isinstance(e.__cause__, RuntimeError):
            raise ModelFileError(f"{broken} ({_first_line(e.__cause__)})") from None
        raise
    except (OSError, EOFError) as e:  # e.g. a legacy pickle cut short: EOFError
        raise ModelFileError(f"{broken} ({_first_line(e)})") from None


def _first_line(e: Optional[BaseException]) -> str:
    """``Type: first line of the message`` of ``e``."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


@contextmanager
def readable_checkpoints() -> Iterator[None]:
    """Within the block, ESPnet's ``build_model_from_file`` (any task: ASR, LM)
    loads checkpoints with :func:`load_checkpoint`."""
    with swapped_attributes(espnet2.tasks.abs_task, {"safe_torch_load": load_checkpoint}):
        yield
