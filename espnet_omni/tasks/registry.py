"""Our copies of ESPnet's ``ClassChoices``, extended with our classes.

ESPnet exposes each pluggable component (``--encoder``, ``--loss``, ...) as a
module-level ``ClassChoices`` object, e.g. ``espnet2.tasks.asr.encoder_choices``.
A :class:`ChoiceTable` copies those objects for one ESPnet task module, adds
our classes to the copies only, and can install the copies into the ESPnet
module for the duration of a call (``ASRTask.build_model`` reads the module
globals, not the task class). ESPnet's own objects are never mutated.

Our classes come from :mod:`espnet_omni.tasks.entries` (a table of
:class:`ChoiceEntry`, resolved when the table is built; a missing module is
skipped, a broken one raises) or from :meth:`ChoiceTable.register` (tests,
plugins).

Example:
    >>> import espnet2.tasks.asr
    >>> table = ChoiceTable(espnet2.tasks.asr, ("encoder",), entries=())
    >>> "conformer" in table.choices("encoder").classes
    True
    >>> table.added("encoder")
    {}
"""

from __future__ import annotations

import importlib
import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Iterator, Mapping, Sequence

from espnet2.train.class_choices import ClassChoices

from espnet_omni.tasks.scoped import swapped_attributes

_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED_KEYS = ("none", "nil", "null")  # ClassChoices refuses them too


@dataclass(frozen=True)
class ChoiceEntry:
    """One class of ours offered under an ESPnet option, by import path.

    Attributes:
        choice: the ``ClassChoices`` name, i.e. the option: ``"encoder"`` for
            ``--encoder``/``encoder:`` in YAML, ``"loss"`` for SSL losses.
        key: the value users write in YAML, e.g. ``"omni_conformer"``.
        target: ``"package.module:ClassName"``.
    """

    choice: str
    key: str
    target: str

    def __post_init__(self) -> None:
        if not _KEY_RE.match(self.key) or self.key in _RESERVED_KEYS:
            raise ValueError(
                f"ChoiceEntry key {self.key!r} (for --{self.choice}): must match "
                f"{_KEY_RE.pattern} and not be one of {_RESERVED_KEYS}"
            )
        module, sep, attr = self.target.partition(":")
        if not sep or not module or not attr:
            raise ValueError(
                f"ChoiceEntry target {self.target!r} (key {self.key!r}): "
                "must be 'package.module:ClassName'"
            )

    @property
    def module(self) -> str:
        """Dotted module path of the target."""
        return self.target.partition(":")[0]

    @property
    def attr(self) -> str:
        """Class name inside :attr:`module`."""
        return self.target.partition(":")[2]


def _module_is_absent(error: ModuleNotFoundError, module: str) -> bool:
    """True if ``error`` says ``module`` itself (or a parent package) is absent.

    A module that exists but imports something missing must not be skipped
    silently: that is a bug (or a missing dependency) the user has to see.
    """
    parts = module.split(".")
    prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
    return error.name in prefixes


def _copy_choices(base: ClassChoices) -> ClassChoices:
    """A new ``ClassChoices`` with the same classes, type check and default."""
    return ClassChoices(
        name=base.name,
        classes=dict(base.classes),
        type_check=base.base_type,
        default=base.default,
        optional=base.optional,
    )


class ChoiceTable:
    """ESPnet's ``ClassChoices`` of one task module, copied and extended.

    Args:
        espnet_module: e.g. ``espnet2.tasks.asr``; for each name ``n`` in
            ``choice_names`` it must hold a ``ClassChoices`` ``n_choices``.
        choice_names: the options to copy, in ``class_choices_list`` order
            first (see :meth:`class_choices_list`).
        entries: our classes to add (see :class:`ChoiceEntry`).
    """

    def __init__(
        self,
        espnet_module: ModuleType,
        choice_names: Sequence[str],
        entries: Sequence[ChoiceEntry] = (),
    ) -> None:
        self._module = espnet_module
        self._base: dict[str, ClassChoices] = {}
        for name in choice_names:
            base = getattr(espnet_module, f"{name}_choices", None)
            if not isinstance(base, ClassChoices) or base.name != name:
                raise AttributeError(
                    f"{espnet_module.__name__}.{name}_choices is not a ClassChoices "
                    f"named {name!r}: this ESPnet version changed its registry"
                )
            self._base[name] = base
        self._ours: dict[str, ClassChoices] = {
            name: _copy_choices(base) for name, base in self._base.items()
        }
        self._added: dict[str, dict[str, type]] = {name: {} for name in self._base}
        #: "choice:key" -> why the entry was not registered (module absent).
        self.skipped: dict[str, str] = {}
        for entry in entries:
            self._load(entry)

    # -- queries ---------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The option names this table manages."""
        return tuple(self._base)

    def choices(self, name: str) -> ClassChoices:
        """Our ``ClassChoices`` for ``name`` (ESPnet's classes + ours)."""
        self._check_name(name)
        return self._ours[name]

    def class_choices_list(self, names: Sequence[str]) -> list[ClassChoices]:
        """Our objects for ``names``, in that order (for ``class_choices_list``)."""
        return [self.choices(name) for name in names]

    def added(self, name: str) -> Mapping[str, type]:
        """Only the classes we added under ``name`` (a copy)."""
        self._check_name(name)
        return dict(self._added[name])

    # -- mutation of OUR copies only ------------------------------------

    def register(self, name: str, key: str, cls: type) -> None:
        """Offer ``cls`` as ``--<name> <key>``; idempotent for the same class.

        Raises:
            KeyError: ``name`` is not an option of this table.
            ValueError: bad key, a key of ESPnet's, or a key already taken
                by another class of ours.
            TypeError: ``cls`` is not a subclass of the option's base type.
        """
        self._check_name(name)
        ChoiceEntry(name, key, f"{cls.__module__}:{cls.__qualname__}")  # validates key
        ours = self._ours[name]
        espnet_cls = self._base[name].classes.get(key)
        if espnet_cls is not None:
            raise ValueError(
                f"--{name} {key}: ESPnet already defines it as "
                f"{espnet_cls.__module__}.{espnet_cls.__qualname__}; "
                "choose another key (ours must not shadow ESPnet's)"
            )
        previous = self._added[name].get(key)
        if previous is cls:
            return
        if previous is not None:
            raise ValueError(
                f"--{name} {key}: already registered as "
                f"{previous.__module__}.{previous.__qualname__}, "
                f"refusing {cls.__module__}.{cls.__qualname__}"
            )
        base_type = ours.base_type
        if base_type is not None and not (
            isinstance(cls, type) and issubclass(cls, base_type)
        ):
            raise TypeError(
                f"--{name} {key}: {cls!r} must subclass "
                f"{base_type.__module__}.{base_type.__qualname__}"
            )
        ours.classes[key] = cls
        self._added[name][key] = cls

    def unregister(self, name: str, key: str) -> None:
        """Remove a class of ours (ESPnet's cannot be removed)."""
        self._check_name(name)
        if key not in self._added[name]:
            raise KeyError(
                f"--{name} {key}: not one of ours; ours are {sorted(self._added[name])}"
            )
        del self._added[name][key]
        del self._ours[name].classes[key]

    # -- installing into ESPnet for one call -----------------------------

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Within the block, ESPnet's module globals ``<name>_choices`` are ours."""
        values = {f"{name}_choices": ours for name, ours in self._ours.items()}
        with swapped_attributes(self._module, values):
            yield

    # -- internals ---------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if name not in self._base:
            raise KeyError(
                f"{name!r} is not an option of {self._module.__name__}; "
                f"valid: {sorted(self._base)}"
            )

    def _load(self, entry: ChoiceEntry) -> None:
        self._check_name(entry.choice)
        try:
            module = importlib.import_module(entry.module)
        except ModuleNotFoundError as error:
            if not _module_is_absent(error, entry.module):
                raise
            reason = f"module {entry.module} not found"
            self.skipped[f"{entry.choice}:{entry.key}"] = reason
            logging.debug(
                "espnet_omni: --%s %s skipped: %s", entry.choice, entry.key, reason
            )
            return
        try:
            cls = getattr(module, entry.attr)
        except AttributeError:
            raise AttributeError(
                f"ChoiceEntry --{entry.choice} {entry.key}: module {entry.module} "
                f"has no class {entry.attr!r} (fix espnet_omni/tasks/entries.py)"
            ) from None
        self.register(entry.choice, entry.key, cls)
