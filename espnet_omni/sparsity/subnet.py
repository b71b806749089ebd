"""Sub-network configs and search spaces (typed dataclasses <-> YAML).

A *sub-network* is one sparsity per prunable layer (:class:`SubnetConfig`);
the dense network is all zeros. A :class:`SearchSpace` says which sparsities
each layer may take and which layers move together (``tie``). Sampling takes
an explicit ``random.Random`` or ``torch.Generator``: no global RNG, no
rejection loops.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence

import torch

from espnet_omni.sparsity.masks import MaskSpec, check_sparsity
from espnet_omni.sparsity.yaml_io import check_keys, dump_yaml, load_yaml

TIES = ("global", "per_block", "per_layer")
DEFAULT_CHOICES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

Rng = random.Random | torch.Generator


@dataclass
class SubnetConfig:
    """One sparsity per prunable layer, plus the mask spec they refer to.

    >>> c = SubnetConfig({"a.w": 0.5, "b.w": 0.0})
    >>> SubnetConfig.from_yaml(c.to_yaml()) == c
    True
    >>> SubnetConfig({"a.w": 1.5})
    Traceback (most recent call last):
    ...
    ValueError: sparsities['a.w']=1.5 is outside the valid range [0, 1)
    """

    sparsities: dict[str, float]
    spec: MaskSpec = field(default_factory=MaskSpec)

    def __post_init__(self) -> None:
        if isinstance(self.spec, dict):
            self.spec = MaskSpec.from_dict(self.spec)
        self.sparsities = {
            str(k): check_sparsity(v, f"sparsities[{k!r}]")
            for k, v in self.sparsities.items()
        }

    @classmethod
    def uniform(
        cls, layers: Iterable[str], sparsity: float, spec: MaskSpec | None = None
    ) -> "SubnetConfig":
        """Every layer at the same ``sparsity``."""
        return cls({name: sparsity for name in layers}, spec or MaskSpec())

    def check_layers(self, layer_names: Sequence[str]) -> None:
        """Raise unless the keys are exactly ``layer_names`` (the config was
        written for this architecture); the message lists the valid names."""
        valid = list(layer_names)
        unknown = sorted(set(self.sparsities) - set(valid))
        missing = [n for n in valid if n not in self.sparsities]
        if unknown or missing:
            raise ValueError(
                f"SubnetConfig does not match the model: unknown layers {unknown}, "
                f"missing layers {missing}; valid layer names: {valid}"
            )

    def to_dict(self) -> dict:
        return {"spec": self.spec.to_dict(), "sparsities": dict(self.sparsities)}

    @classmethod
    def from_dict(cls, d: dict) -> "SubnetConfig":
        check_keys(d, ("spec", "sparsities"), cls.__name__)
        spec = MaskSpec.from_dict(d.get("spec", {}))
        return cls(sparsities=d["sparsities"], spec=spec)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text (and file, if ``path``)."""
        return dump_yaml(self.to_dict(), path)

    @classmethod
    def from_yaml(cls, source: str | Path) -> "SubnetConfig":
        """From YAML text or a file path; unknown keys raise ``ValueError`` naming the file."""
        d = load_yaml(source)
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source):
                raise ValueError(f"{source}: {e} (expected a sub-network YAML of bin/search or "
                                 "bin/subnet_yaml)") from None
            raise


def block_of(name: str) -> str:
    """The block a layer belongs to, for ``tie: per_block``.

    The first two name components when the second is a block index, else the
    first one (so the whole front end is one group).

    >>> block_of("encoders.3.self_attn.linear_q"), block_of("embed.conv.2")
    ('encoders.3', 'embed')
    """
    parts = name.split(".")
    if len(parts) > 1 and parts[1].isdigit():
        return ".".join(parts[:2])
    return parts[0]


def _pick(rng: Rng, n: int) -> int:
    """Uniform index in ``[0, n)`` from an explicit generator."""
    if isinstance(rng, random.Random):
        return rng.randrange(n)
    if isinstance(rng, torch.Generator):
        return int(torch.randint(n, (1,), generator=rng))
    raise TypeError(
        f"rng must be random.Random or torch.Generator, got {type(rng).__name__}"
    )


def _choices(values: Iterable[float], what: str) -> tuple[float, ...]:
    out = tuple(sorted({check_sparsity(v, what) for v in values}))
    if not out:
        raise ValueError(f"{what} must not be empty")
    return out


@dataclass
class SearchSpace:
    """Allowed sparsities per layer and how layers are tied.

    Attributes:
        layers: Prunable layer names (the model's ``prunable_layers()``).
        choices: Sparsities every layer may take (sorted, deduplicated).
        layer_choices: Per-layer overrides of ``choices``.
        tie: ``global`` (one value for all layers), ``per_block`` (one per
            :func:`block_of` group) or ``per_layer``. Tied layers draw from
            the intersection of their choices.
        spec: The mask spec sampled configs carry.

    >>> sp = SearchSpace(["e.0.a", "e.0.b", "e.1.a"], (0.0, 0.5), tie="per_block")
    >>> c = sample(sp, random.Random(0)).sparsities
    >>> c["e.0.a"] == c["e.0.b"]
    True
    """

    layers: tuple[str, ...]
    choices: tuple[float, ...] = DEFAULT_CHOICES
    layer_choices: dict[str, tuple[float, ...]] = field(default_factory=dict)
    tie: str = "per_layer"
    spec: MaskSpec = field(default_factory=MaskSpec)

    def __post_init__(self) -> None:
        self.layers = tuple(str(n) for n in self.layers)
        if not self.layers:
            raise ValueError("SearchSpace.layers must not be empty")
        dup = sorted({n for n in self.layers if self.layers.count(n) > 1})
        if dup:
            raise ValueError(f"SearchSpace.layers has duplicates {dup}")
        if self.tie not in TIES:
            raise ValueError(f"SearchSpace.tie={self.tie!r} is not one of {TIES}")
        if isinstance(self.spec, dict):
            self.spec = MaskSpec.from_dict(self.spec)
        self.choices = _choices(self.choices, "SearchSpace.choices")
        unknown = sorted(set(self.layer_choices) - set(self.layers))
        if unknown:
            raise ValueError(
                f"SearchSpace.layer_choices has unknown layers {unknown}; "
                f"valid layer names: {list(self.layers)}"
            )
        self.layer_choices = {
            k: _choices(v, f"SearchSpace.layer_choices[{k!r}]")
            for k, v in self.layer_choices.items()
        }
        for key, members in self.groups().items():
            if not self.group_choices(members):
                raise ValueError(
                    f"tied group {key!r} has no sparsity allowed for all of {members}"
                )

    def allowed(self, layer: str) -> tuple[float, ...]:
        """Choices of one layer."""
        return self.layer_choices.get(layer, self.choices)

    def groups(self) -> dict[str, list[str]]:
        """Tie groups, in layer order: key -> member layers."""
        out: dict[str, list[str]] = {}
        for name in self.layers:
            key = {"global": "all", "per_block": block_of(name), "per_layer": name}[
                self.tie
            ]
            out.setdefault(key, []).append(name)
        return out

    def group_choices(self, members: Sequence[str]) -> tuple[float, ...]:
        """Sparsities allowed for every member (sorted)."""
        common = set(self.allowed(members[0]))
        for name in members[1:]:
            common &= set(self.allowed(name))
        return tuple(sorted(common))

    def capped(self, max_sparsity: float) -> "SearchSpace":
        """The space with choices above ``max_sparsity`` removed (for a
        gradual schedule); a layer keeps at least its smallest choice."""
        cap = check_sparsity(max_sparsity, "max_sparsity")

        def cut(values: tuple[float, ...]) -> tuple[float, ...]:
            return tuple(v for v in values if v <= cap) or values[:1]

        return SearchSpace(
            self.layers,
            cut(self.choices),
            {k: cut(v) for k, v in self.layer_choices.items()},
            self.tie,
            self.spec,
        )

    def to_dict(self) -> dict:
        return {
            "layers": list(self.layers),
            "choices": list(self.choices),
            "layer_choices": {k: list(v) for k, v in self.layer_choices.items()},
            "tie": self.tie,
            "spec": self.spec.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SearchSpace":
        check_keys(d, [f.name for f in fields(cls)], cls.__name__)
        return cls(**d)

    def to_yaml(self, path: str | Path | None = None) -> str:
        return dump_yaml(self.to_dict(), path)

    @classmethod
    def from_yaml(cls, source: str | Path) -> "SearchSpace":
        return cls.from_dict(load_yaml(source))


def _per_group(space: SearchSpace, pick) -> SubnetConfig:
    sparsities: dict[str, float] = {}
    for members in space.groups().values():
        value = pick(space.group_choices(members))
        sparsities.update({name: value for name in members})
    ordered = {name: sparsities[name] for name in space.layers}
    return SubnetConfig(ordered, space.spec)


def sample(space: SearchSpace, rng: Rng) -> SubnetConfig:
    """A uniformly random sub-network (uniform per tie group)."""
    return _per_group(space, lambda c: c[_pick(rng, len(c))])


def densest(space: SearchSpace) -> SubnetConfig:
    """Every group at its lowest allowed sparsity (the dense net if 0 allowed)."""
    return _per_group(space, lambda c: c[0])


def sparsest(space: SearchSpace) -> SubnetConfig:
    """Every group at its highest allowed sparsity."""
    return _per_group(space, lambda c: c[-1])
