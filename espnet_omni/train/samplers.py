"""Which sub-networks one supernet training step runs.

A step runs K sub-networks on the same mini-batch and accumulates their
gradients before one optimizer step. The rules:

- ``sandwich`` (BigNAS / AttentiveNAS): the densest, the sparsest and K-2
  uniformly random sub-networks. The two ends of the space are trained every
  step, which is what makes every size in between usable.
- ``uniform``: K uniformly random sub-networks.
- ``fixed``: the same list every step (e.g. the K target sizes of Table A).
- ``dense``: only the dense network (K=1): plain training, the control.

The first sub-network of a step is the densest one for ``sandwich`` (and for
``fixed`` when its first entry is the densest), so in-place distillation can
take its posteriors as the teacher of the others.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from espnet_omni.sparsity.masks import check_sparsity
from espnet_omni.sparsity.subnet import SearchSpace, SubnetConfig, densest, sample, sparsest
from espnet_omni.sparsity.yaml_io import check_keys

RULES = ("sandwich", "uniform", "fixed", "dense")


@dataclass
class SamplerConfig:
    """How sub-networks are drawn each step.

    Attributes:
        rule: One of ``RULES``.
        num_subnets: K, sub-networks per step (``sandwich`` needs K >= 2;
            ``fixed`` uses ``len(fixed)``; ``dense`` uses 1).
        fixed: Uniform sparsities of the ``fixed`` rule, densest first.
    """

    rule: str = "sandwich"
    num_subnets: int = 3
    fixed: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"sampler rule={self.rule!r} is not one of {RULES}")
        self.fixed = [check_sparsity(s, f"sampler fixed[{i}]") for i, s in enumerate(self.fixed)]
        if self.rule == "fixed" and not self.fixed:
            raise ValueError("sampler rule 'fixed' needs a non-empty 'fixed' list of sparsities")
        if self.rule != "fixed" and self.fixed:
            raise ValueError(f"sampler 'fixed' list is only used by rule 'fixed', not {self.rule!r}")
        minimum = {"sandwich": 2, "uniform": 1, "fixed": 1, "dense": 1}[self.rule]
        if self.rule in ("sandwich", "uniform") and not (minimum <= self.num_subnets <= 16):
            raise ValueError(
                f"sampler num_subnets={self.num_subnets} is outside [{minimum}, 16] for rule {self.rule!r}"
            )

    @property
    def k(self) -> int:
        """Sub-networks per step."""
        return {"fixed": len(self.fixed), "dense": 1}.get(self.rule, self.num_subnets)

    @classmethod
    def from_dict(cls, d: dict) -> "SamplerConfig":
        check_keys(d, ("rule", "num_subnets", "fixed"), "sampler")
        return cls(**d)


def plan_step(space: SearchSpace, cfg: SamplerConfig, rng: random.Random) -> list[tuple[str, SubnetConfig]]:
    """The (tag, sub-network) list of one step; tags name the reported losses.

    >>> sp = SearchSpace(["a", "b"], (0.0, 0.5, 0.9))
    >>> [(t, tuple(c.sparsities.values())) for t, c in plan_step(sp, SamplerConfig("sandwich", 2), random.Random(0))]
    [('max', (0.0, 0.0)), ('min', (0.9, 0.9))]
    """
    if cfg.rule == "dense":
        return [("max", densest(space))]
    if cfg.rule == "fixed":
        return [(fixed_tag(s), SubnetConfig.uniform(space.layers, s, space.spec)) for s in cfg.fixed]
    if cfg.rule == "uniform":
        return [(f"rand{i}", sample(space, rng)) for i in range(cfg.k)]
    plan = [("max", densest(space)), ("min", sparsest(space))]
    return plan + [(f"rand{i}", sample(space, rng)) for i in range(cfg.k - 2)]


def fixed_tag(sparsity: float) -> str:
    """Report tag of a uniform sparsity: 0.7 -> 's70'."""
    return f"s{round(100 * sparsity):02d}"


def uniform_subnets(space: SearchSpace, sparsities: Sequence[float]) -> list[tuple[str, SubnetConfig]]:
    """Tagged uniform sub-networks, e.g. for validation at 0, 0.5, 0.7, 0.9."""
    return [(fixed_tag(s), SubnetConfig.uniform(space.layers, check_sparsity(s), space.spec)) for s in sparsities]
