"""Gradual sparsity schedule (Zhu & Gupta 2017) and the mask-refresh cadence.

The schedule ramps the *maximum* sparsity a supernet may sample, from
``initial_sparsity`` at ``begin_step`` to ``final_sparsity`` at ``end_step``:

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (end - t0)) ** 3

fast at first (the network has many redundant weights) and slower near the
end. As in the paper, ``t`` only advances in steps of ``update_every`` (their
``dt``), so the sparsity is piecewise constant between updates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from espnet_omni.sparsity.masks import check_sparsity
from espnet_omni.sparsity.yaml_io import check_keys, dump_yaml, load_yaml


@dataclass(frozen=True)
class CubicSchedule:
    """Cubic ramp of the maximum sparsity.

    Attributes:
        initial_sparsity: ``s_i`` in ``[0, 1)``, used up to ``begin_step``.
        final_sparsity: ``s_f`` in ``[s_i, 1)``, reached at ``end_step``.
        begin_step: ``t0`` >= 0 (optimizer steps).
        end_step: ``t0 + n * dt`` > ``begin_step``.
        update_every: ``dt`` >= 1; the sparsity changes only every ``dt`` steps.

    >>> s = CubicSchedule(0.0, 0.8, begin_step=0, end_step=100)
    >>> [round(s.sparsity_at(t), 4) for t in (0, 50, 100, 500)]
    [0.0, 0.7, 0.8, 0.8]
    """

    initial_sparsity: float = 0.0
    final_sparsity: float = 0.9
    begin_step: int = 0
    end_step: int = 10000
    update_every: int = 1

    def __post_init__(self) -> None:
        check_sparsity(self.initial_sparsity, "CubicSchedule.initial_sparsity")
        check_sparsity(self.final_sparsity, "CubicSchedule.final_sparsity")
        if self.final_sparsity < self.initial_sparsity:
            raise ValueError(
                f"CubicSchedule.final_sparsity={self.final_sparsity} must be >= "
                f"initial_sparsity={self.initial_sparsity}"
            )
        if self.begin_step < 0:
            raise ValueError(f"CubicSchedule.begin_step={self.begin_step} must be >= 0")
        if self.end_step <= self.begin_step:
            raise ValueError(
                f"CubicSchedule.end_step={self.end_step} must be > "
                f"begin_step={self.begin_step}"
            )
        if self.update_every < 1:
            raise ValueError(
                f"CubicSchedule.update_every={self.update_every} must be >= 1"
            )

    def sparsity_at(self, step: int) -> float:
        """Maximum sparsity at optimizer ``step`` (clamped outside the ramp)."""
        t0, t1 = self.begin_step, self.end_step
        if step <= t0:
            return self.initial_sparsity
        if step >= t1:
            return self.final_sparsity
        t = t0 + (step - t0) // self.update_every * self.update_every
        frac = 1.0 - (t - t0) / (t1 - t0)
        s_i, s_f = self.initial_sparsity, self.final_sparsity
        return s_f + (s_i - s_f) * frac**3

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text (and file, if ``path``)."""
        return dump_yaml(asdict(self), path)

    @classmethod
    def from_yaml(cls, source: str | Path) -> "CubicSchedule":
        """From YAML text or a file path; unknown keys raise."""
        d = load_yaml(source)
        check_keys(d, [f.name for f in fields(cls)], cls.__name__)
        return cls(**d)

