"""Search budgets in measured milliseconds: a per-group latency table.

A structured (``mask_granularity: group``) sub-network runs as a physically
smaller Conformer, whose time is the sum of its parts: per block the
self-attention (its heads), the macaron and plain feed-forward (their units),
the conv module (its channels); the front end (its channels); and a constant
rest (norms, residuals, positional encoding, the CTC head). Each part's time
depends on its own size only, so one table of *part time per group per
sparsity* predicts any sub-network:

    ms(candidate) = rest + sum_groups table[group][sparsity]

:func:`measure_latency_table` builds it on the machine that runs the search,
once per choice of sparsity: the uniform sub-network at that sparsity is
exported (structured, in memory) and its encoder timed on ``seconds`` of audio
(``threads`` torch threads, ``torch.inference_mode``, warm), each part in a
second call with forward hooks (the total without them); medians over
``repeats`` rounds interleaved over the choices.
The unit is milliseconds of compute per second of audio, encoder + CTC (the
fbank front end, the same for every sub-network, is not counted).
:func:`time_subnet` times a sub-network directly, to check a prediction.
The table is then checked against direct timing of a few random mixed
sub-networks and its part times rescaled by one factor (parts timed among
uniform neighbours run a little faster than among larger ones). It is cached
as JSON (:func:`load_or_measure`), keyed by the model's sizes, the choices,
the threads, the audio length and the CPU.
"""

from __future__ import annotations

import json
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from espnet_omni.nets.omni_conformer import supernet_encoder
from espnet_omni.search.cost_table import CostTable

#: group name suffix -> the encoder module timed for it
PARTS = {"heads": "self_attn", "macaron_units": "feed_forward_macaron",
         "ffn_units": "feed_forward", "conv_channels": "conv_module"}
FRAMES_PER_SECOND = 100  # fbank frames per second of audio (hop 10 ms)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), which keys a latency table; the
    benchmarks record it too."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _part_module(name: str) -> str:
    """Module path (in the exported encoder) whose time a group decides."""
    if name == "frontend_channels":
        return "embed"
    block, _, kind = name.rpartition(".")
    if kind not in PARTS:
        raise ValueError(f"group {name!r}: no latency part for it (known: {sorted(PARTS)}, frontend_channels)")
    return f"{block}.{PARTS[kind]}"


def _group_supernet(model: torch.nn.Module):
    enc = supernet_encoder(model, "latency table")
    if "structured" not in enc.mask_spec.unit.export_formats:
        raise ValueError(
            f"a latency budget needs a structured supernet (mask_granularity 'group'), this one is "
            f"{enc.mask_spec.granularity!r}: its sub-networks run at dense speed once exported "
            "(use budget_unit params or bytes, or train conf/train_asr_omni_group.yaml)")
    return enc


def structured_model(model: torch.nn.Module, train_config: dict, sparsities: dict[str, float]) -> torch.nn.Module:
    """The ESPnet model of a sub-network exported ``structured`` (in memory);
    ``train_config``: the supernet's training config (``vars(train_args)``)."""
    import argparse

    from espnet_omni.export.config import exported_config
    from espnet_omni.export.exporter import plan_export
    from espnet_omni.sparsity.subnet import SubnetConfig
    from espnet_omni.tasks import OmniASRTask

    enc = _group_supernet(model)
    plan = plan_export(model, SubnetConfig(sparsities, enc.mask_spec), "structured")
    args = argparse.Namespace(**exported_config(train_config, plan.encoder, plan.sizes))
    out = OmniASRTask.build_model(args)
    out.load_state_dict(plan.state)
    return out.eval()


def _timed_parts(models: dict[Any, torch.nn.Module], seconds: float, repeats: int,
                 parts: Sequence[str]) -> dict[Any, dict[str, float]]:
    """Median ms per part, ``total`` and ``ctc`` of each model's encoder + CTC.

    ``total`` is timed without hooks; the parts in a second, hooked call (a
    forward hook costs about as much as a small layer, so a total timed with
    them would count their overhead: the rest would absorb it).
    """
    any_model = next(iter(models.values()))
    feats = torch.randn(1, int(seconds * FRAMES_PER_SECOND) + 1, any_model.frontend.output_size(),
                        generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([feats.size(1)])
    runs: dict[Any, list[dict[str, float]]] = {k: [] for k in models}
    current: dict[str, float] = {}
    starts: dict[int, float] = {}

    def pre(module, args):
        starts[id(module)] = time.perf_counter()

    def post(part):
        def hook(module, args, output):
            current[part] = current.get(part, 0.0) + (time.perf_counter() - starts[id(module)]) * 1e3
        return hook

    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first round warms up
            for key, m in models.items():
                m.encoder(feats, lens)  # warm caches for this model
                t0 = time.perf_counter()
                out, _, _ = m.encoder(feats, lens)
                t1 = time.perf_counter()
                m.ctc.log_softmax(out)
                t2 = time.perf_counter()
                current.clear()
                if parts:
                    handles = []
                    for part in parts:
                        module = m.encoder.get_submodule(part)
                        handles += [module.register_forward_pre_hook(pre),
                                    module.register_forward_hook(post(part))]
                    try:
                        m.encoder(feats, lens)
                    finally:
                        for h in handles:
                            h.remove()
                runs[key].append({**current, "total": (t1 - t0) * 1e3, "ctc": (t2 - t1) * 1e3})
    return {k: {p: statistics.median(r[p] for r in rs[1:]) for p in rs[1]} for k, rs in runs.items()}


def measure_latency_table(model: torch.nn.Module, train_config: dict, groups: Sequence[str],
                          choices: Sequence[float], *, seconds: float = 4.0, threads: int = 1, repeats: int = 7,
                          calibrate: int = 4) -> dict[str, Any]:
    """``{"rest": ms, "table": {group: {sparsity: ms}}, ...}`` per second of audio (see the
    module doc); ``calibrate``: random mixed sub-networks timed directly to check and
    rescale it (:func:`calibrate_table`; 0: none)."""
    choices = sorted({0.0, *map(float, choices)})
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        everything = supernet_encoder(model, "latency table").prunable_layers()
        models = {s: structured_model(model, train_config, {g: (s if g in groups else 0.0) for g in everything})
                  for s in choices}
        parts = [_part_module(g) for g in groups]
        timed = _timed_parts(models, seconds, repeats, parts)
    finally:
        torch.set_num_threads(before)
    dense = timed[0.0]
    rest = dense["total"] - sum(dense[p] for p in parts) + dense["ctc"]
    table = {"unit": "ms per second of audio (encoder + CTC)", "seconds": seconds, "threads": threads,
             "repeats": repeats, "cpu": cpu_model(), "choices": choices, "rest": rest / seconds,
             "dense": (dense["total"] + dense["ctc"]) / seconds,
             "table": {g: {str(s): timed[s][_part_module(g)] / seconds for s in choices} for g in groups}}
    if calibrate:
        calibrate_table(table, model, train_config, groups, choices, calibrate, seconds, threads, repeats)
    return table


def calibrate_table(table: dict[str, Any], model, train_config: dict, groups: Sequence[str],
                    choices: Sequence[float], count: int, seconds: float, threads: int, repeats: int) -> None:
    """Check the table against direct timing of ``count`` random mixed sub-networks and
    rescale the part times so that it predicts them on average (in place).

    Parts timed inside uniform sub-networks run a little faster than the same parts
    among larger neighbours (caches); one factor over every part (the median of
    ``(measured - rest) / (predicted - rest)``) removes that bias. ``table["check"]``
    records the candidates' predictions before and after, and the measurements.
    """
    rng = random.Random(0)
    everything = supernet_encoder(model, "latency table").prunable_layers()
    cands = [{g: (rng.choice(list(choices)) if g in groups else 0.0) for g in everything} for _ in range(count)]
    measured = [time_subnet(model, train_config, c, seconds=seconds, threads=threads, repeats=repeats)
                for c in cands]
    before = [predict_ms(table, {g: c[g] for g in groups}) for c in cands]
    rest = table["rest"]
    scale = statistics.median((m - rest) / (p - rest) for m, p in zip(measured, before))
    for g in table["table"]:
        table["table"][g] = {s: v * scale for s, v in table["table"][g].items()}
    table["dense"] = rest + (table["dense"] - rest) * scale
    after = [predict_ms(table, {g: c[g] for g in groups}) for c in cands]
    table["check"] = {"scale": scale, "measured": measured, "predicted_before": before, "predicted": after,
                      "error_pct": [round(100 * (p / m - 1), 2) for p, m in zip(after, measured)]}


def predict_ms(latency: dict[str, Any], sparsities: dict[str, float]) -> float:
    """Predicted ms per second of audio of a sub-network (group -> sparsity)."""
    table = latency["table"]
    missing = sorted(set(table) - set(sparsities))
    if missing:
        raise ValueError(f"sparsities lack the groups {missing}")
    try:
        return latency["rest"] + sum(table[g][str(float(s))] for g, s in sparsities.items())
    except KeyError as e:
        raise ValueError(f"sparsity {e} is not in the latency table's choices {latency['choices']}") from None


def time_subnet(model: torch.nn.Module, train_config: dict, sparsities: dict[str, float], *, seconds: float = 4.0,
                threads: int = 1, repeats: int = 7) -> float:
    """Measured ms per second of audio of the structured export of ``sparsities``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timed = _timed_parts({0: structured_model(model, train_config, sparsities)}, seconds, repeats, [])
    finally:
        torch.set_num_threads(before)
    return (timed[0]["total"] + timed[0]["ctc"]) / seconds


def load_or_measure(path: Path, model: torch.nn.Module, train_config: dict, groups: Sequence[str],
                    choices: Sequence[float], **kw) -> dict[str, Any]:
    """The table cached in ``path`` when it was measured for the same model sizes,
    choices, settings and CPU; else measured now and written there."""
    enc = _group_supernet(model)
    key = {"groups": list(groups), "choices": sorted({0.0, *map(float, choices)}), "cpu": cpu_model(),
           "units": {g: [us.units for us in enc.get_submodule(g).unit_sets] for g in groups},
           **{k: kw.get(k, d) for k, d in (("seconds", 4.0), ("threads", 1), ("repeats", 7), ("calibrate", 4))}}
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached
    table = measure_latency_table(model, train_config, groups, choices, **kw)
    table["key"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table, indent=2) + "\n")
    return table


def latency_cost_table(latency: dict[str, Any], space) -> CostTable:
    """A search :class:`~espnet_omni.search.cost_table.CostTable` in ms per
    second of audio: per tie group of ``space``, the summed part times."""
    table = []
    for members in space.groups().values():
        table.append({s: sum(latency["table"][m][str(float(s))] for m in members)
                      for s in space.group_choices(members)})
    return CostTable("ms", list(space.groups()), table, latency["rest"], 1.0, latency["dense"])
