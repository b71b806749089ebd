#!/usr/bin/env python3
"""Omni-sparsity on CPU: supernet step cost, mask refresh, exported models.

Usage (from the repository root, the recipe directory):
    PYTHONPATH=. .venv/bin/python bench/omni_sparsity.py           # full, ~4 min on 2 cores
    PYTHONPATH=. .venv/bin/python bench/omni_sparsity.py --quick   # smoke, < 1 min

Writes: bench/results/omni_sparsity.md and bench/results/omni_sparsity.json
(``--quick`` writes ``omni_sparsity_quick.*`` instead, so a smoke run never
overwrites measured numbers; its repeats are too few to mean anything).

Measures, for the recipe's model (``conf/train_asr_omni.yaml``: 4 blocks x
144, macaron, conv module, conv2d front end on 40 mels), with random weights:

1. one supernet training step (forward + backward + grad clip + Adam, as
   ESPnet's trainer does) of encoder + CTC on 8 padded utterances of <= 3 s of
   features: stock ``ConformerEncoder`` vs ``OmniConformerEncoder`` at
   sparsity 0 and at 0.5 / 0.9 for unstructured, block 1x4, row and group
   (tied heads / units / channels) masks,
   plus a random per-layer sub-network every step (the trainer's case: the
   cached masks are rebuilt); 1 and 2 torch threads, repeats interleaved;
2. ``refresh_masks()`` per granularity and the mask rebuild that a
   sub-network switch costs, amortized per training step;
3. exported models (``sparse`` unstructured with/without the front end,
   ``row`` with the front end, with and without ``embed.conv.0``;
   ``structured`` of a ``group`` supernet with the front end) at
   0.5 / 0.7 / 0.8 / 0.9: ``model.pth`` size vs the dense export and encoder
   inference time on one 4 s utterance, one thread, vs the dense export.

Timing does not depend on the weights' values, so random weights are used.
File sizes do: zlib on random (uniform-init) weights compresses worse than on
trained ones, so the sizes are a pessimistic case.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import yaml
from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet_omni.export import export_asr_model
from espnet_omni.search.latency_table import cpu_model  # noqa: F401  (the benchmarks import it from here)
from espnet_omni.nets.omni_conformer import BLOCK_PATTERNS, OmniConformerEncoder
from espnet_omni.scoring.tables import rel, rel_text
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.tasks import OmniASRTask
from espnet_omni.testing.random_supernet import write_random_supernet

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONF = ROOT / "conf" / "train_asr_omni.yaml"
N_MELS = 40
FRAMES_PER_S = 100  # hop_length 160 at 16 kHz
CHARS_PER_S = 15  # read English speech, characters incl. spaces
# a-z, apostrophe and <space>: a character token list like the recipe's.
TOKENS = ["<blank>", "<unk>", "<space>", "'"] + [chr(c) for c in range(97, 123)]
TOKENS.append("<sos/eos>")
MASK_UPDATE_INTERVAL = 50  # conf/train_asr_omni.yaml omni_conf
SUBNETS_PER_STEP = 3  # sandwich: densest (no masks) + sparsest + 1 random
GRANULARITIES = {  # name -> encoder_conf additions
    "unstructured": dict(mask_granularity="unstructured"),
    "block 1x4": dict(mask_granularity="block", mask_block=[1, 4]),
    "nm 2:4": dict(mask_granularity="nm", mask_n=2, mask_m=4),
    "row": dict(mask_granularity="row"),
    "group": dict(mask_granularity="group"),
}
# Export variants: name -> (format, encoder_conf additions).
EXPORTS = {
    "sparse unstr. (blocks only)": ("sparse", dict(mask_granularity="unstructured")),
    "sparse unstr. + front end": (
        "sparse", dict(mask_granularity="unstructured", prune_frontend=True)),
    "row + front end": ("row", dict(mask_granularity="row", prune_frontend=True)),
    "row + front end + conv.0": ("row", dict(
        mask_granularity="row", prune_frontend=True,
        prunable=list(BLOCK_PATTERNS) + ["embed.conv.0"])),
    "structured (group) + front end": (
        "structured", dict(mask_granularity="group", prune_frontend=True)),
}
# Parts of the encoder timed separately (fnmatch on module names) to see
# where an exported model's time goes; the rest (norms, positional encoding,
# residuals) is the total minus these.
PARTS = {
    "front end (embed)": "embed",
    "macaron FFN": "encoders.*.feed_forward_macaron",
    "self-attention": "encoders.*.self_attn",
    "conv module": "encoders.*.conv_module",
    "FFN": "encoders.*.feed_forward",
}
BREAKDOWN_SPARSITY = 0.7  # the row speed target's sparsity
TARGETS = {
    "mask_overhead_pct": 5.0,  # supernet step over dense, any granularity
    "row70_speedup": 2.5,  # 70% row / structured export, encoder inference, one thread
    "unstr80_size_ratio": 0.25,  # 80% unstructured sparse export, model.pth
}


@dataclass
class Settings:
    """Repeat counts (full run vs ``--quick``)."""

    step_repeats: int = 30
    step_warmup: int = 2
    threads: tuple[int, ...] = (1, 2)
    refresh_repeats: int = 10
    export_sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9)
    infer_repeats: int = 30
    infer_warmup: int = 3


QUICK = Settings(step_repeats=1, step_warmup=1, threads=(1,), refresh_repeats=2,
                 export_sparsities=(0.7,), infer_repeats=3, infer_warmup=1)


# ----------------------------------------------------------------- helpers
def encoder_conf() -> dict:
    """The recipe's encoder_conf (stock keys only)."""
    return dict(yaml.safe_load(MODEL_CONF.read_text())["encoder_conf"])


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call, milliseconds."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def summary(samples: list[float]) -> dict:
    return {"min_ms": round(min(samples), 3),
            "median_ms": round(statistics.median(samples), 3),
            "n": len(samples)}


def interleaved(cases: dict[str, Callable[[], object]], repeats: int,
                warmup: int, prime: bool = False) -> dict[str, list[float]]:
    """Run every case ``warmup`` times, then ``repeats`` rounds of each case
    in turn (so drift of the machine, ~30% over seconds on this VM, hits all
    cases alike). ``prime``: an untimed call right before each timed one
    (warm caches, as a model decoding utterance after utterance)."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            if prime:
                fn()
            out[name].append(timed(fn))
    return out


def paired_overhead(samples: list[float], ref: list[float]) -> float:
    """Median over rounds of ``sample / ref - 1``, in %: the rounds are
    interleaved, so pairing cancels slow drift of the machine."""
    return round(100 * (statistics.median(s / r for s, r in zip(samples, ref)) - 1), 2)


def paired_overhead_ci(samples: list[float], ref: list[float], level: float = 0.95,
                       resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of :func:`paired_overhead` (rounds
    resampled with replacement), in %: how far the median would move on
    another run of the same length on the same machine."""
    ratios = [s / r for s, r in zip(samples, ref)]
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    lo, hi = meds[int((1 - level) / 2 * resamples)], meds[int((1 + level) / 2 * resamples) - 1]
    return round(100 * (lo - 1), 2), round(100 * (hi - 1), 2)


# ------------------------------------------------------- 1. training step
@dataclass
class Batch:
    """8 utterances of 2.4 .. 3 s of features, padded (ESPnet sorts by length)."""

    feats: torch.Tensor  # (B, T, 40)
    feat_lens: torch.Tensor  # (B,)
    ys: torch.Tensor  # (B, L), padded with -1
    ys_lens: torch.Tensor  # (B,)

    @classmethod
    def make(cls, n: int, seconds: float, vocab: int, seed: int = 0) -> "Batch":
        g = torch.Generator().manual_seed(seed)
        frames = int(seconds * FRAMES_PER_S)
        lens = torch.linspace(frames, 0.8 * frames, n).round().long()
        feats = torch.randn(n, frames, N_MELS, generator=g)
        for i, t in enumerate(lens.tolist()):
            feats[i, t:] = 0.0
        ys_lens = (lens * CHARS_PER_S // FRAMES_PER_S).long()
        ys = torch.randint(1, vocab - 1, (n, int(ys_lens.max())), generator=g)
        for i, t in enumerate(ys_lens.tolist()):
            ys[i, t:] = -1
        return cls(feats, lens, ys, ys_lens)


@dataclass
class Trainable:
    """Encoder + CTC + Adam (the recipe's optimizer and ESPnet's grad clip)."""

    encoder: torch.nn.Module
    ctc: CTC
    opt: torch.optim.Optimizer = field(init=False)

    def __post_init__(self) -> None:
        params = list(self.encoder.parameters()) + list(self.ctc.parameters())
        self.opt = torch.optim.Adam(params, lr=1e-4, weight_decay=1e-6)
        self.encoder.train()
        self.ctc.train()

    def step(self, b: Batch) -> None:
        self.opt.zero_grad(set_to_none=True)
        hs, hlens, _ = self.encoder(b.feats, b.feat_lens)  # (B, T/4, 144)
        loss = self.ctc(hs, hlens, b.ys, b.ys_lens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.opt.param_groups[0]["params"], 5.0)
        self.opt.step()


def trainables(conf: dict, vocab: int) -> Callable[[str | None], Trainable]:
    """A factory of fresh encoder + CTC + Adam, all with the same weights:
    ``None`` gives the stock dense encoder, a granularity name a supernet.

    Every case gets its own copy: cases sharing a supernet at different
    sparsities would rebuild each other's cached masks on every step.
    """
    torch.manual_seed(0)
    state = ConformerEncoder(N_MELS, **conf).state_dict()
    ctc_state = CTC(vocab, conf["output_size"]).state_dict()

    def make(granularity: str | None) -> Trainable:
        if granularity is None:
            enc = ConformerEncoder(N_MELS, **conf)
        else:
            enc = OmniConformerEncoder(N_MELS, **conf, **GRANULARITIES[granularity])
        enc.load_state_dict(state)  # strict: stock names; refreshes the ranks
        ctc = CTC(vocab, conf["output_size"])
        ctc.load_state_dict(ctc_state)
        return Trainable(enc, ctc)

    return make


def bench_train_step(conf: dict, st: Settings) -> list[dict]:
    vocab = len(TOKENS)
    batch = Batch.make(8, 3.0, vocab)
    make = trainables(conf, vocab)
    choices = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # no 0: every layer masked

    def fixed(granularity: str | None, s: float = 0.0) -> Callable[[], None]:
        t = make(granularity)
        if granularity is not None:
            enc = t.encoder
            cfg = SubnetConfig.uniform(enc.prunable_layers(), s, enc.mask_spec)
            # the trainer activates a sub-network before each pass: timed too
            return lambda: (enc.set_active_subnet(cfg), t.step(batch))
        return lambda: t.step(batch)

    def sampled(granularity: str) -> Callable[[], None]:
        t = make(granularity)
        space, rng = t.encoder.search_space(choices), random.Random(0)
        return lambda: (t.encoder.sample_active_subnet(space, rng), t.step(batch))

    cases = {"dense ConformerEncoder": fixed(None),
             "omni unstructured s=0": fixed("unstructured", 0.0)}
    for name in ("unstructured", "block 1x4", "row", "group"):
        for s in (0.5, 0.9):
            cases[f"omni {name} s={s}"] = fixed(name, s)
    for name in ("unstructured", "block 1x4", "row", "group"):
        cases[f"omni {name}, random subnet per step"] = sampled(name)

    rows = []
    for threads in st.threads:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        samples = interleaved(cases, st.step_repeats, st.step_warmup)
        print(f"  {threads} thread(s): {time.perf_counter() - t0:.0f} s", flush=True)
        ref = samples["dense ConformerEncoder"]
        for name, xs in samples.items():
            rows.append({"case": name, "threads": threads, **summary(xs),
                         "samples_ms": [round(x, 2) for x in xs],
                         "overhead_pct": paired_overhead(xs, ref),
                         "overhead_ci95_pct": list(paired_overhead_ci(xs, ref)),
                         "overhead_min_pct": round(100 * (min(xs) / min(ref) - 1), 2)})
    return rows


# ------------------------------------------------------- 2. mask refresh
def bench_refresh(conf: dict, st: Settings, dense_step_ms: dict[int, float]) -> list[dict]:
    torch.manual_seed(0)
    state = ConformerEncoder(N_MELS, **conf).state_dict()
    rows = []
    for name, extra in GRANULARITIES.items():
        enc = OmniConformerEncoder(N_MELS, **conf, **extra)
        enc.load_state_dict(state)
        layers = [enc.get_submodule(n) for n in enc.masked_layer_names()]
        a, b = (SubnetConfig.uniform(enc.prunable_layers(), s, enc.mask_spec)
                for s in (0.5, 0.6))
        flip = [a, b]

        def switch() -> None:  # a sub-network switch: every cached mask rebuilt
            flip.reverse()
            enc.set_active_subnet(flip[0])
            for layer in layers:
                layer.active_mask()

        for threads in st.threads:
            torch.set_num_threads(threads)
            xs = interleaved({"refresh": enc.refresh_masks, "switch": switch},
                             st.refresh_repeats, 1)
            refresh, build = (statistics.median(xs[k]) for k in ("refresh", "switch"))
            step = dense_step_ms[threads]
            per_step = refresh / MASK_UPDATE_INTERVAL
            rebuild = (SUBNETS_PER_STEP - 1) * build
            rows.append({
                "granularity": name, "threads": threads, "layers": len(layers),
                "refresh": summary(xs["refresh"]), "switch": summary(xs["switch"]),
                "refresh_per_step_ms": round(per_step, 3),
                "refresh_per_step_pct": round(100 * per_step / step, 3),
                "rebuild_per_step_ms": round(rebuild, 3),
                "rebuild_per_step_pct": round(100 * rebuild / (SUBNETS_PER_STEP * step), 3),
            })
    return rows


# --------------------------------------------------- 3. exported models
def write_experiment(directory: Path, extra: dict, seed: int = 0) -> tuple[Path, Path]:
    """config.yaml + model.pth of a random supernet with the recipe's model."""
    return write_random_supernet(directory, TOKENS, {**encoder_conf(), **extra},
                                 f"{{n_fft: 400, hop_length: 160, n_mels: {N_MELS}}}", seed)


def load(config: Path, weights: Path) -> torch.nn.Module:
    model, _ = OmniASRTask.build_model_from_file(config, weights, "cpu")
    return model.eval()


def breakdown(encoders: dict[str, torch.nn.Module], feats: torch.Tensor,
              lens: torch.Tensor, repeats: int) -> dict[str, dict[str, float]]:
    """Per encoder: median ms per :data:`PARTS` entry (summed over blocks),
    ``total`` and ``other``; timed with forward hooks in a separate pass
    (hooks cost a little), warm (second call in a row), rounds interleaved
    over the encoders."""
    runs: dict[str, list[dict[str, float]]] = {k: [{}] for k in encoders}
    starts: dict[int, float] = {}
    current = [""]

    def pre(module, args) -> None:
        starts[id(module)] = time.perf_counter()

    def post(part: str):
        def hook(module, args, output) -> None:
            ms = (time.perf_counter() - starts[id(module)]) * 1e3
            last = runs[current[0]][-1]
            last[part] = last.get(part, 0.0) + ms
        return hook

    handles = []
    for enc in encoders.values():
        for name, module in enc.named_modules():
            for part, pattern in PARTS.items():
                if fnmatch.fnmatchcase(name, pattern):
                    handles += [module.register_forward_pre_hook(pre),
                                module.register_forward_hook(post(part))]
    try:
        with torch.inference_mode():
            for _ in range(repeats):
                for key, enc in encoders.items():
                    current[0] = key
                    enc(feats, lens)  # prime: warm caches (recorded, dropped)
                    runs[key][-1] = {}
                    runs[key][-1]["total"] = timed(lambda: enc(feats, lens))
                    runs[key].append({})
    finally:
        for h in handles:
            h.remove()
    result = {}
    for key, rs in runs.items():
        rs = rs[:-1]
        out = {k: statistics.median(r.get(k, 0.0) for r in rs) for k in [*PARTS, "total"]}
        out["other"] = out["total"] - sum(out[k] for k in PARTS)
        result[key] = {k: round(v, 3) for k, v in out.items()}
    return result


def bench_exports(st: Settings, work: Path) -> tuple[list[dict], dict]:
    torch.set_num_threads(1)
    feats = torch.randn(1, 4 * FRAMES_PER_S + 1, N_MELS,
                        generator=torch.Generator().manual_seed(1))  # (1, 401, 40)
    lens = torch.tensor([feats.shape[1]])
    encoders: dict[str, torch.nn.Module] = {}
    rows: list[dict] = []
    for vi, (variant, (fmt, extra)) in enumerate(EXPORTS.items()):
        sup = load(*write_experiment(work / f"sup{vi}", extra))
        train_config = yaml.safe_load((work / f"sup{vi}" / "config.yaml").read_text())
        layers = sup.encoder.prunable_layers()
        if vi == 0:  # the dense reference: stock Conformer, stock shapes
            cfg = SubnetConfig.uniform(layers, 0.0, sup.encoder.mask_spec)
            rep = export_asr_model(sup, train_config, cfg, "dense", work / "dense")
            encoders["dense"] = load(work / "dense" / "config.yaml",
                                     work / "dense" / "model.pth").encoder
            rows.append({"variant": "dense export", "format": "dense",
                         "sparsity": 0.0, "model_bytes": rep.model_bytes,
                         "size_ratio": 1.0, "max_abs_diff": 0.0})
        for s in st.export_sparsities:
            cfg = SubnetConfig.uniform(layers, s, sup.encoder.mask_spec)
            out = work / f"exp{vi}_{int(s * 100)}"
            rep = export_asr_model(sup, train_config, cfg, fmt, out)
            enc = load(out / "config.yaml", out / "model.pth").encoder
            sup.encoder.set_active_subnet(cfg)
            with torch.no_grad():
                want = sup.encoder(feats, lens)[0]  # (1, 99, 144)
                diff = float((enc(feats, lens)[0] - want).abs().max())
            key = f"{variant} @ {s}"
            encoders[key] = enc
            rows.append({"variant": variant, "format": fmt, "sparsity": s,
                         "model_bytes": rep.model_bytes,
                         "dense_model_bytes": rep.dense_model_bytes,
                         "size_ratio": rep.size_ratio,
                         "nonzero_params": rep.nonzero_params,
                         "total_params": rep.total_params,
                         "encoder_sizes": rep.encoder_sizes,
                         "max_abs_diff": diff})
        del sup
    cases: dict[str, Callable[[], object]] = {}
    for key, enc in encoders.items():
        cases[key] = lambda e=enc: e(feats, lens)
        cases[f"{key} [front end]"] = lambda e=enc: e.embed(feats, None)
    with torch.inference_mode():
        warm = interleaved(cases, st.infer_repeats, st.infer_warmup, prime=True)
    med = {k: statistics.median(v) for k, v in warm.items()}
    for row, key in zip(rows, encoders):
        front = f"{key} [front end]"
        row.update(encoder=summary(warm[key]), front_end=summary(warm[front]),
                   speedup=round(med["dense"] / med[key], 3),
                   front_end_share=round(med[front] / med[key], 3))
    dense_info = {"encoder_median_ms": round(med["dense"], 3),
                  "front_end_median_ms": round(med["dense [front end]"], 3),
                  "breakdown": {}}
    parts = {k: e for k, e in encoders.items() if k == "dense" or (
        k.startswith(("row", "structured")) and k.endswith(f"@ {BREAKDOWN_SPARSITY}"))}
    dense_info["breakdown"] = breakdown(parts, feats, lens, st.infer_repeats)
    return rows, dense_info


# ----------------------------------------------------------------- report
def check_targets(steps: list[dict], exports: list[dict]) -> list[dict]:
    out = []
    worst = max((r for r in steps if r["case"].startswith("omni")),
                key=lambda r: r["overhead_pct"])
    out.append({"target": f"mask overhead <= {TARGETS['mask_overhead_pct']}% "
                          "(worst supernet case, median of paired ratios)",
                "value": f"{worst['overhead_pct']}% ({worst['case']}, "
                         f"{worst['threads']} thread(s); 95% CI "
                         f"{worst['overhead_ci95_pct'][0]} .. {worst['overhead_ci95_pct'][1]}%)",
                "met": worst["overhead_pct"] <= TARGETS["mask_overhead_pct"]})
    for r in exports:
        if r["format"] in ("row", "structured") and r["sparsity"] == 0.7:
            out.append({"target": f"70% {r['format']} ({r['variant']}) >= "
                                  f"{TARGETS['row70_speedup']}x faster",
                        "value": f"{r['speedup']}x",
                        "met": r["speedup"] >= TARGETS["row70_speedup"]})
        if r["format"] == "sparse" and r["sparsity"] == 0.8:
            out.append({"target": f"80% unstructured ({r['variant']}) file <= "
                                  f"{TARGETS['unstr80_size_ratio']}x",
                        "value": f"{r['size_ratio']}x",
                        "met": r["size_ratio"] <= TARGETS["unstr80_size_ratio"]})
    return out


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown(res: dict) -> str:
    m = res["meta"]
    quick = " (QUICK smoke run: not meaningful)" if m["quick"] else ""
    md = [f"# Omni-sparsity benchmark{quick}\n",
          f"- command: `{m['command']}`",
          f"- date: {m['date']}; total {m['wall_s']} s; 1-min load average "
          f"before / after: {m['loadavg_1min'][0]} / {m['loadavg_1min'][1]}",
          f"- CPU: {m['cpu']} ({m['cores']} cores); torch {m['torch']}, "
          f"threads measured: {m['threads']} (torch default here: {m['default_threads']})",
          f"- model: {m['model']}",
          "- weights are **random**: timings do not depend on the values; file "
          "sizes do, and zlib on random weights is a pessimistic case (trained "
          "weights compress better).\n"]
    md.append("## 1. Supernet training step\n")
    md.append(f"{m['batch']}. One step = forward + backward + grad clip (5) + Adam "
              "of encoder + CTC; the supernet cases include activating the "
              "sub-network. Overhead = median over interleaved rounds of "
              "(case / dense) - 1, with its 95% bootstrap interval over the rounds; "
              "`min` column: min / min - 1.\n")
    for threads in m["threads"]:
        rs = [r for r in res["train_step"] if r["threads"] == threads]
        md.append(f"**{threads} thread(s)**\n")
        md.append(table(["case", "min ms", "median ms", "overhead %", "95% CI %", "overhead % (min)"],
                        [[r["case"], r["min_ms"], r["median_ms"], r["overhead_pct"],
                          "{} .. {}".format(*r.get("overhead_ci95_pct", ("-", "-"))),
                          r["overhead_min_pct"]] for r in rs]))
    md.append("## 2. Mask refresh\n")
    md.append(f"`refresh_masks()` re-ranks every prunable layer (one sort each); "
              f"amortized over `mask_update_interval` = {MASK_UPDATE_INTERVAL} steps "
              "and shown as % of one dense step. `switch` = activating another "
              "sub-network and rebuilding every cached float mask; with per-layer "
              f"random sub-networks this happens for {SUBNETS_PER_STEP - 1} of the "
              f"{SUBNETS_PER_STEP} sandwich passes of a step (the densest uses no "
              f"masks), shown as % of {SUBNETS_PER_STEP} dense passes.\n")
    md.append(table(
        ["granularity", "threads", "layers", "refresh median ms", "per step ms",
         "per step %", "switch median ms", "switches per step %"],
        [[r["granularity"], r["threads"], r["layers"], r["refresh"]["median_ms"],
          r["refresh_per_step_ms"], r["refresh_per_step_pct"],
          r["switch"]["median_ms"], r["rebuild_per_step_pct"]] for r in res["refresh"]]))
    d = res["export_dense"]
    md.append("## 3. Exported models\n")
    md.append(f"Encoder inference on one 4 s utterance (401 x {N_MELS} features), "
              "one thread, `torch.inference_mode`, each timed call right after an "
              "untimed one of the same model (warm caches, as when decoding "
              "utterance after utterance); speedup = ratio of medians vs the dense "
              f"export: {d['encoder_median_ms']} ms, of which the conv2d front end "
              f"{d['front_end_median_ms']} ms. "
              "Size = whole `model.pth` (encoder + "
              "CTC) vs the dense export (same sub-network saved `dense`, float32). "
              "`sparse` exports expand to dense tensors when loaded, so they run "
              "at dense speed; `row` and `structured` exports are physically smaller. "
              "`max |diff|` = exported encoder output vs the masked supernet.\n")
    md.append(table(
        ["variant", "sparsity", "model.pth MB", "size vs dense", "encoder median ms",
         "speedup", "front end ms", "front-end share", "max abs diff"],
        [[r["variant"], r["sparsity"], round(r["model_bytes"] / 1e6, 2),
          r["size_ratio"], r["encoder"]["median_ms"], r["speedup"],
          r["front_end"]["median_ms"], r["front_end_share"], f"{r['max_abs_diff']:.1e}"]
         for r in res["exports"]]))
    bd = d["breakdown"]
    if bd:
        md.append(f"Where the time goes (one thread, warm, ms, median of interleaved "
                  f"runs timed with forward hooks, summed over the "
                  f"{m['num_blocks']} blocks; `other` = "
                  "norms, positional encoding, residuals):\n")
        keys = list(bd)
        md.append(table(["part", *keys],
                        [[p, *(bd[k][p] for k in keys)] for p in [*PARTS, "other", "total"]]))
    md.append("## Targets\n")
    md.append(table(["target", "measured", "met"],
                    [[t["target"], t["value"], "yes" if t["met"] else "**no**"]
                     for t in res["targets"]]))
    return "\n".join(md)


def command_line(argv: list[str] | None = None) -> str:
    """How this benchmark was run, with paths relative to the repository root (no machine
    paths in bench/results): ``PYTHONPATH=. .venv/bin/python bench/x.py --dir .``."""
    return f"PYTHONPATH=. {rel(sys.executable)} {rel_text(' '.join(sys.argv if argv is None else argv))}"


def write_results(out: Path, stem: str, res: dict, md: str) -> None:
    """``out/<stem>.json`` (every number) and ``out/<stem>.md`` (tables); prints the tables."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{stem}.md").write_text(md)
    print(md)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="tiny repeats (smoke run, < 1 min); writes *_quick.* files")
    p.add_argument("--out_dir", default=str(ROOT / "bench" / "results"))
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    st = QUICK if args.quick else Settings()
    logging.getLogger().setLevel(logging.ERROR)  # "Set decoder to none" per build
    start = time.perf_counter()
    default_threads = torch.get_num_threads()
    load_before = os.getloadavg()
    conf = encoder_conf()
    print("1/3 training step ...", flush=True)
    steps = bench_train_step(conf, st)
    dense_ms = {r["threads"]: r["median_ms"] for r in steps
                if r["case"] == "dense ConformerEncoder"}
    print(f"2/3 mask refresh ... ({time.perf_counter() - start:.0f} s)", flush=True)
    refresh = bench_refresh(conf, st, dense_ms)
    print(f"3/3 exports ... ({time.perf_counter() - start:.0f} s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="omni_bench_") as tmp:
        exports, dense_info = bench_exports(st, Path(tmp))
    torch.set_num_threads(default_threads)
    res = {
        "meta": {
            "command": command_line(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M UTC"),
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": list(st.threads), "default_threads": default_threads,
            "num_blocks": conf["num_blocks"],
            "quick": args.quick, "settings": vars(st),
            "model": f"{MODEL_CONF.relative_to(ROOT)} encoder ({conf['num_blocks']} "
                     f"blocks x {conf['output_size']}, FFN {conf['linear_units']}, "
                     f"macaron, conv kernel {conf['cnn_module_kernel']}, "
                     f"{conf['input_layer']} front end, {N_MELS} mels) + CTC "
                     f"({len(TOKENS)} tokens)",
            "batch": f"Batch: 8 utterances of 3.0 .. 2.4 s ({N_MELS}-mel features, "
                     f"padded to 300 frames), ~{CHARS_PER_S} characters/s of targets",
        },
        "train_step": steps, "refresh": refresh, "exports": exports,
        "export_dense": dense_info,
    }
    res["targets"] = check_targets(steps, exports)
    res["meta"]["wall_s"] = round(time.perf_counter() - start, 1)
    # Other processes skew every number: the 1-min load average at both ends
    # (this run itself adds ~1-2 while it runs).
    res["meta"]["loadavg_1min"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    stem = "omni_sparsity_quick" if args.quick else "omni_sparsity"
    write_results(Path(args.out_dir), stem, res, markdown(res))
    print(f"wrote {Path(args.out_dir) / stem}.md and .json in {res['meta']['wall_s']} s")


if __name__ == "__main__":
    main()
