"""Search a trained supernet for the best sub-network per size budget.

Glue between the model-free :mod:`espnet_omni.evolutionary_search` and a real
model: the search dimensions are the tie groups of the encoder's search space,
the cost is read from a per-group table (:class:`~espnet_omni.search.cost_table.CostTable`, cheap enough for
the search's many repair steps) and the score is a :class:`SubnetEvaluator`
decode of a dev set, memoised in ``out_dir/scores.jsonl`` so that a rerun
resumes (``scores.key.json`` pins what the cached scores were computed on).
The command line is ``python -m espnet_omni.bin.search``.

Writes, in ``out_dir``::

    front.csv, front.yaml    Pareto front (cost in the budget unit, score)
    subnet_<budget>.yaml     best sub-network per budget: a SubnetConfig YAML
                             (loads with SubnetConfig.from_yaml; header
                             comment with budget, cost and score)
    search.json              summary: budgets, best cost/score per budget,
                             evaluations, seconds
    scores.jsonl             score cache;  scores.key.json: its fingerprint

Usage::

    summary = search_from_files("exp/x/config.yaml", "exp/x/valid.loss.ave.pth",
                                "dump/raw/dev", "exp/x/search",
                                SubnetSearchConfig(budgets=[0.5, 0.3]))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from espnet_omni.evolutionary_search import EvolutionConfig, ScoreCache, search_budgets
from espnet_omni.evolutionary_search.report import budget_label, write_front_csv, write_front_yaml
from espnet_omni.search.bn_calib import DEFAULT_CALIBRATION_UTTS
from espnet_omni.search.cost_table import BUDGET_UNITS, build_cost_table
from espnet_omni.search.subnet_eval import (
    DEFAULT_BATCH_SECONDS,
    HEADS,
    METRICS,
    SubnetEvaluator,
    check_head,
    default_head,
)
from espnet_omni.nets.omni_conformer import supernet_encoder
from espnet_omni.sparsity.storage import STORAGES
from espnet_omni.sparsity.subnet import DEFAULT_CHOICES, TIES, SearchSpace, SubnetConfig
from espnet_omni.tasks import OmniASRTask

logger = logging.getLogger(__name__)

SCORE_CACHE, CACHE_KEY = "scores.jsonl", "scores.key.json"


def candidate_subnet(space: SearchSpace, candidate: Sequence[float]) -> SubnetConfig:
    """The SubnetConfig of a candidate (one sparsity per tie group)."""
    groups = list(space.groups().values())
    if len(candidate) != len(groups):
        raise ValueError(f"candidate has {len(candidate)} values, the space {len(groups)} groups")
    values = {n: float(s) for members, s in zip(groups, candidate) for n in members}
    return SubnetConfig({n: values[n] for n in space.layers}, space.spec)


@dataclass
class SubnetSearchConfig:
    """What to search (the CLI's options minus paths).

    Attributes:
        budgets: cost budgets in ``budget_unit``.
        budget_unit: ``fraction`` of the dense encoder's parameters,
            ``params`` (non-zero encoder parameters), ``bytes`` (encoder
            storage in ``storage`` format, ``dtype_bytes`` per value) or
            ``ms`` (encoder + CTC compute per second of audio on this
            machine, ``latency_threads`` threads, predicted by a latency
            table measured once: :mod:`..latency_table`; needs a ``group``
            supernet, whose sub-networks export physically smaller).
        metric: ``wer``, ``cer`` (greedy decoding by ``head``) or ``loss`` (its loss).
        choices: sparsities each group may take.
        tie: ``per_layer``, ``per_block`` or ``global``.
        storage, dtype_bytes: byte cost model (``bytes`` only).
        evolution: the evolutionary search's hyper-parameters.
        max_utts: dev utterances scored (N spread evenly over the set; None: all).
        batch_seconds: padded audio seconds per decoding batch.
        calibration_utts: training utterances that re-estimate each
            candidate's BatchNorm statistics before it is scored (used when
            a calibration dir is given; see :mod:`..bn_calib`).
        mode: encoder mode of the scoring: ``full``, or ``streaming`` (the
            sparse networks of a dual-mode supernet run streaming).
        head: ``ctc`` (CTC greedy / CTC loss), ``transducer`` (greedy RNN-T /
            transducer loss of a transducer model) or ``auto`` (the
            transducer when the model has one).
    """

    budgets: list[float]
    budget_unit: str = "fraction"
    metric: str = "wer"
    choices: tuple[float, ...] = DEFAULT_CHOICES
    tie: str = "per_layer"
    storage: str = "auto"
    dtype_bytes: int = 4
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    max_utts: int | None = None
    batch_seconds: float = DEFAULT_BATCH_SECONDS
    calibration_utts: int = DEFAULT_CALIBRATION_UTTS
    latency_threads: int = 1
    latency_seconds: float = 4.0
    mode: str = "full"
    head: str = "auto"

    def __post_init__(self) -> None:
        if self.calibration_utts < 1:
            raise ValueError(f"calibration_utts={self.calibration_utts} must be >= 1")
        if not self.budgets:
            raise ValueError("budgets must hold at least one budget")
        for name, value, valid in (("budget_unit", self.budget_unit, BUDGET_UNITS),
                                   ("metric", self.metric, METRICS),
                                   ("tie", self.tie, TIES),
                                   ("storage", self.storage, STORAGES),
                                   ("mode", self.mode, ("full", "streaming")),
                                   ("head", self.head, ("auto", *HEADS))):
            if value not in valid:
                raise ValueError(f"{name}={value!r} is not one of {valid}")
        if self.budget_unit == "fraction" and any(not 0 < b <= 1 for b in self.budgets):
            raise ValueError(f"budgets {self.budgets}: a fraction budget must be in (0, 1]")


@dataclass
class BudgetResult:
    """The chosen sub-network of one budget (a ``search.json`` entry).

    Attributes:
        budget: in the search's budget unit.
        file: the ``subnet_<budget>.yaml`` name (relative to ``out_dir``).
        cost: its cost in the budget unit (``<= budget``).
        score: its dev score (the metric; lower is better).
        nonzero_params: non-zero encoder parameters.
        fraction: ``nonzero_params`` over the dense encoder's.
        sparsities: one per search dimension (``SearchSummary.dimensions``).
    """

    budget: float
    file: str
    cost: float
    score: float
    nonzero_params: int
    fraction: float
    sparsities: list[float]


@dataclass
class SearchSummary:
    """``search.json``: what was searched, the result per budget, the cost of it.

    Attributes:
        budgets, budget_unit, metric, tie: as searched.
        dimensions: the search dimensions (tie groups: layer names for
            ``per_layer``, ``encoders.<i>`` / ``embed`` for ``per_block``,
            ``all`` for ``global``).
        dense_params: parameters of the dense encoder.
        dense_cost, min_cost: cost of the dense encoder and of the sparsest
            candidate, in the budget unit.
        n_utts: dev utterances scored.
        results: one :class:`BudgetResult` per budget, ascending.
        n_evaluations: candidates scored by this run (0 when all came from
            the cache); n_cached: candidates in the score cache now.
        seconds: wall time of the whole call (loading and recording included).
        seconds_per_evaluation: search wall time / n_evaluations (None if 0).
        evolution: the :class:`EvolutionConfig` used.
        mode: the encoder mode the candidates were scored in.
    """

    budgets: list[float]
    budget_unit: str
    metric: str
    tie: str
    dimensions: list[str]
    dense_params: int
    dense_cost: float
    min_cost: float
    n_utts: int
    results: list[BudgetResult]
    n_evaluations: int
    n_cached: int
    seconds: float
    seconds_per_evaluation: float | None
    evolution: dict[str, Any]
    mode: str = "full"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def _model_digest(model: torch.nn.Module) -> str:
    """sha256 of the state dict (names and values): identifies the weights."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_cache_key(out_dir: Path, key: dict[str, Any]) -> None:
    """Write the score cache's fingerprint, or raise if the cache holds other scores."""
    path = out_dir / CACHE_KEY
    scores = out_dir / SCORE_CACHE
    if path.exists() and scores.exists() and scores.stat().st_size > 0:
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
        if diff:
            raise ValueError(
                f"{out_dir / SCORE_CACHE} holds scores of another setup (differs in {diff}: "
                f"{ {k: old.get(k) for k in diff} } vs { {k: key.get(k) for k in diff} }); "
                f"use another out_dir or delete {SCORE_CACHE} and {CACHE_KEY}"
            )
    path.write_text(json.dumps(key, indent=2) + "\n")


def _cached_values(path: Path) -> set[float]:
    """Sparsities appearing in a score cache file (a rerun may use other choices)."""
    if not path.exists():
        return set()
    items = ScoreCache(lambda c: float("nan"), path).items()
    return {v for cand, _ in items for v in cand if 0.0 <= v < 1.0}


def _write_subnet(path: Path, cfg: SubnetConfig, header: Sequence[str]) -> None:
    path.write_text("".join(f"# {line}\n" for line in header) + cfg.to_yaml())


def _cost_tables(model, train_args, encoder, out_dir: Path, dims, config: SubnetSearchConfig):
    """(the budget unit's cost table, the params table, the minimum achievable cost); raises on an
    impossible budget before any audio is read."""
    # Cost every sparsity the search or the cache file may hold (the front
    # and the per-budget answers range over the whole cache).
    cost_space = encoder.search_space(
        sorted(set(config.choices) | _cached_values(out_dir / SCORE_CACHE)), config.tie)
    if config.budget_unit == "ms":  # measured once on this machine, cached in out_dir
        from espnet_omni.search.latency_table import latency_cost_table, load_or_measure

        latency = load_or_measure(Path(out_dir) / "latency_table.json", model, vars(train_args),
                                  encoder.prunable_layers(), cost_space.choices,
                                  seconds=config.latency_seconds, threads=config.latency_threads)
        costs = latency_cost_table(latency, cost_space)
    else:
        costs = build_cost_table(encoder, cost_space, config.budget_unit,
                                 storage=config.storage, dtype_bytes=config.dtype_bytes)
    min_cost = costs([d[-1] for d in dims])
    for b in config.budgets:
        if b < min_cost:
            raise ValueError(
                f"budget {b:g} ({config.budget_unit}) is impossible: the minimum "
                f"achievable is {min_cost:g} (every group at sparsity {max(config.choices):g}, "
                f"tie={config.tie}; the fastest / smallest sub-network of the choices)"
            )
    params = (build_cost_table(encoder, cost_space, "params")
              if config.budget_unit in ("bytes", "ms") else costs)
    return costs, params, min_cost


def _write_best(out_dir: Path, space, budget: float, p, params, config: SubnetSearchConfig, evaluator,
                data_dir, calibration_dir) -> BudgetResult:
    """Write ``subnet_<budget>.yaml`` of the best point ``p`` of a budget; its result row."""
    name = f"subnet_{budget_label(budget)}.yaml"
    n_params = params.raw(p.candidate)
    _write_subnet(out_dir / name, candidate_subnet(space, p.candidate), [
        "Sub-network chosen by espnet_omni.bin.search",
        f"budget: {budget:g} {config.budget_unit}; cost: {p.cost:.6g}; "
        f"non-zero encoder params: {n_params}",
        f"score: {p.score:.6g} ({config.metric} of CTC "
        f"{'loss' if config.metric == 'loss' else 'greedy decoding'} on "
        f"{evaluator.n_utts} utts of {data_dir}, encoder mode {config.mode})",
    ] + ([f"BatchNorm statistics re-estimated on {config.calibration_utts} utts of "
          f"{calibration_dir} before scoring (export it the same way)"]
         if evaluator.calibration_batches else []))
    return BudgetResult(budget, name, p.cost, p.score, n_params, n_params / params.dense, list(p.candidate))


def search_subnets(
    model: torch.nn.Module,
    train_args,
    data_dir: str | Path,
    out_dir: str | Path,
    config: SubnetSearchConfig,
    *,
    device: str = "cpu",
    where: str = "model",
    calibration_dir: str | Path | None = None,
) -> SearchSummary:
    """Run the search on a built model (see the module docstring for outputs).

    ``calibration_dir`` (training data): each candidate is scored after its
    BatchNorm statistics are re-estimated on ``config.calibration_utts`` of
    its utterances, as its export will be (None: the checkpoint's statistics).

    Raises:
        ValueError: the encoder is not a supernet; a budget is below the
            minimum achievable cost (before any audio is read); the score
            cache in ``out_dir`` belongs to another model/dev set/metric.
    """
    start = time.perf_counter()
    encoder = supernet_encoder(model, where)
    space = encoder.search_space(config.choices, config.tie)
    dims = [space.group_choices(m) for m in space.groups().values()]
    out_dir = Path(out_dir)
    costs, params, min_cost = _cost_tables(model, train_args, encoder, out_dir, dims, config)

    head = default_head(model) if config.head == "auto" else config.head
    check_head(model, head)  # before reading any audio
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_cache_key(out_dir, {
        "model_sha256": _model_digest(model),
        "data_dir": str(Path(data_dir).resolve()),
        "max_utts": config.max_utts,
        "batch_seconds": config.batch_seconds,
        "metric": config.metric,
        "calibration": None if calibration_dir is None else
        {"data_dir": str(Path(calibration_dir).resolve()), "utts": config.calibration_utts},
        "dimensions": [list(m) for m in space.groups().values()],
        "spec": encoder.mask_spec.to_dict(),
        # (full mode adds no key: caches made before modes existed stay valid)
        **({} if config.mode == "full" else {"mode": config.mode}),
        **({} if head == "ctc" else {"head": head}),  # (caches made before heads stay valid)
    })
    evaluator = SubnetEvaluator(model, data_dir, train_args=train_args,
                                max_utts=config.max_utts, device=device,
                                batch_seconds=config.batch_seconds,
                                progress=config.evolution.progress,
                                calibration_dir=calibration_dir,
                                calibration_utts=config.calibration_utts,
                                mode=config.mode, head=head)

    def score(candidate: Sequence[float]) -> float:
        return evaluator.score(candidate_subnet(space, candidate), config.metric)

    t0 = time.perf_counter()
    sweep = search_budgets(config.budgets, dims, costs, score, config.evolution,
                           cache_path=out_dir / SCORE_CACHE)
    search_seconds = time.perf_counter() - t0

    write_front_csv(sweep.front, out_dir / "front.csv", names=costs.names)
    write_front_yaml(sweep.front, out_dir / "front.yaml")
    results = [_write_best(out_dir, space, b, sweep.best[b], params, config, evaluator, data_dir, calibration_dir)
               for b in sorted(sweep.best)]
    summary = SearchSummary(
        budgets=sorted(sweep.best), budget_unit=config.budget_unit, metric=config.metric,
        tie=config.tie, dimensions=costs.names, dense_params=params.dense,
        dense_cost=costs.dense / costs.scale, min_cost=min_cost,
        n_utts=evaluator.n_utts, results=results, n_evaluations=sweep.n_evaluations,
        n_cached=len(ScoreCache(score, out_dir / SCORE_CACHE)),
        seconds=time.perf_counter() - start,
        seconds_per_evaluation=search_seconds / sweep.n_evaluations
        if sweep.n_evaluations else None,
        evolution=config.evolution.to_dict(),
        mode=config.mode,
    )
    (out_dir / "search.json").write_text(summary.to_json())
    return summary


def search_from_files(
    asr_train_config: str | Path,
    asr_model_file: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    config: SubnetSearchConfig,
    *,
    device: str = "cpu",
    calibration_dir: str | Path | None = None,
) -> SearchSummary:
    """Load ``config.yaml`` + checkpoint with OmniASRTask and run :func:`search_subnets`."""
    model, train_args = OmniASRTask.build_model_from_file(asr_train_config, asr_model_file,
                                                          device)
    return search_subnets(model, train_args, data_dir, out_dir, config, device=device,
                          where=str(asr_train_config), calibration_dir=calibration_dir)
