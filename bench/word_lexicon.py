#!/usr/bin/env python3
"""A decoder-side lever of the accuracy issue: lexicon-constrained CTC decoding with a word n-gram.

Usage (after the ablation's base row exists, ``local/run_ablation.sh --rows base``):
    .venv/bin/python -m pip install flashlight-text    # not a dependency of the toolkit
    PYTHONPATH=. .venv/bin/python bench/word_lexicon.py  # ~6 min on one thread
Writes: bench/results/word_lexicon.md and .json.

The default recipe decodes with a CTC prefix beam search fused with a character
LM (``conf/decode_ctc_lm.yaml``): it may spell words that do not exist. This
bench asks whether a closed vocabulary helps: every word of the LM text
(``--lm_text``, the recipe's ``data/lm_pool.txt``, which holds no sentence of an
evaluation set) is a lexicon entry, spelled in the model's characters and ended
by ``<space>``; a word 3-gram of the same text (interpolated Kneser-Ney,
written as ARPA by :func:`write_arpa` below) scores the words; torchaudio's
flashlight lexicon beam search (``torchaudio.models.decoder.ctc_decoder``)
decodes the acoustic model's CTC posteriors. The LM weight and word insertion
score are tuned on dev (``--grid``); the best dev point decodes test,
test_seen and real, and each is compared with the char-LM decoding of the same
model (``--baseline``) by paired bootstrap.

The posteriors are computed once per set (ESPnet's Speech2Text, one thread) and
the timed decoding is the beam search alone, so ``rtf_search`` excludes the
encoder (the char-LM RTF in RESULTS.md includes it).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from omni_sparsity import cpu_model, write_results  # noqa: E402

from espnet_omni.corpus.datadir import read_lines  # noqa: E402
from espnet_omni.scoring.tables import audio_seconds, rel  # noqa: E402
from espnet_omni.corpus.datadir import read_kv  # noqa: E402
from espnet_omni.scoring.wer import corpus_counts, paired_bootstrap  # noqa: E402

SETS = ("dev", "test", "test_seen", "real")
Ngram = Tuple[str, ...]


# ------------------------------------------------------------ word n-gram (ARPA)
def kneser_ney(sentences: Iterable[str], order: int = 3):
    """Interpolated Kneser-Ney n-gram probabilities and back-off weights.

    One absolute discount per order, ``D = n1 / (n1 + 2 n2)`` of that order's
    (continuation) counts. Orders below the highest count distinct left
    contexts, except n-grams that start with ``<s>``, which keep their counts.
    Unigrams are interpolated with the uniform distribution.
    Returns ``(prob, bow)``: ``prob[n][ngram]`` the interpolated probability of
    a seen n-gram, ``bow[n][context]`` the weight of the lower order.
    """
    counts: List[Dict[Ngram, int]] = [defaultdict(int) for _ in range(order + 1)]
    for s in sentences:
        w = ["<s>"] + s.split() + ["</s>"]
        for n in range(1, order + 1):
            for i in range(len(w) - n + 1):
                g = tuple(w[i:i + n])
                if g != ("<s>",):
                    counts[n][g] += 1
    kn: List[Dict[Ngram, int]] = [{} for _ in range(order + 1)]
    kn[order] = dict(counts[order])
    for n in range(order - 1, 0, -1):
        c: Dict[Ngram, int] = defaultdict(int)
        for g in counts[n + 1]:
            c[g[1:]] += 1
        for g, v in counts[n].items():
            if g[0] == "<s>":
                c[g] = v
        kn[n] = dict(c)
    disc = [0.5] * (order + 1)
    for n in range(1, order + 1):
        n1 = sum(v == 1 for v in kn[n].values())
        n2 = sum(v == 2 for v in kn[n].values())
        if n1 + n2:
            disc[n] = n1 / (n1 + 2 * n2)
    prob: List[Dict[Ngram, float]] = [{} for _ in range(order + 1)]
    bow: List[Dict[Ngram, float]] = [{} for _ in range(order + 1)]
    total, types = sum(kn[1].values()), len(kn[1])
    for g, v in kn[1].items():
        prob[1][g] = max(v - disc[1], 0) / total + disc[1] * types / total / types
    for n in range(2, order + 1):
        ctx_total: Dict[Ngram, int] = defaultdict(int)
        ctx_types: Dict[Ngram, int] = defaultdict(int)
        for g, v in kn[n].items():
            ctx_total[g[:-1]] += v
            ctx_types[g[:-1]] += 1
        for h in ctx_total:
            bow[n - 1][h] = disc[n] * ctx_types[h] / ctx_total[h]
        for g, v in kn[n].items():
            h = g[:-1]
            prob[n][g] = max(v - disc[n], 0) / ctx_total[h] + bow[n - 1][h] * backoff_prob(prob, bow, g[1:])
    return prob, bow


def backoff_prob(prob, bow, g: Ngram) -> float:
    """P(g[-1] | g[:-1]) under the back-off model (KeyError for an unknown word)."""
    if g in prob[len(g)]:
        return prob[len(g)][g]
    if len(g) == 1:
        raise KeyError(g)
    return bow[len(g) - 1].get(g[:-1], 1.0) * backoff_prob(prob, bow, g[1:])


def write_arpa(prob, bow, path: Path) -> None:
    order = len(prob) - 1
    with open(path, "w") as f:
        f.write("\\data\\\n")
        f.write(f"ngram 1={len(prob[1]) + 1}\n")
        for n in range(2, order + 1):
            f.write(f"ngram {n}={len(prob[n])}\n")
        for n in range(1, order + 1):
            f.write(f"\n\\{n}-grams:\n")
            items = sorted(list(prob[n].items()) + ([(("<s>",), None)] if n == 1 else []))
            for g, p in items:
                line = f"{-99.0 if p is None else math.log10(p):.6f}\t{' '.join(g)}"
                if n < order and g in bow[n]:
                    line += f"\t{math.log10(bow[n][g]):.6f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


# ------------------------------------------------------------ posteriors and decoding
def posteriors(exp: Path, data: Path, cache: Path) -> Dict[str, Dict[str, np.ndarray]]:
    """CTC log-posteriors (T, V) of every utterance of every set, cached as ``cache/<set>.npz``."""
    cache.mkdir(parents=True, exist_ok=True)
    model = None
    out = {}
    for s in SETS:
        f = cache / f"{s}.npz"
        if not f.exists():
            if model is None:
                from espnet2.bin.asr_inference import Speech2Text
                from espnet2.fileio.sound_scp import SoundScpReader
                from espnet_omni.tasks import omni_asr_inference
                with omni_asr_inference():
                    model = Speech2Text(asr_train_config=exp / "config.yaml",
                                        asr_model_file=exp / "valid.loss.ave.pth", device="cpu").asr_model.eval()
            reader = SoundScpReader(str(data / s / "wav.scp"))
            d = {}
            for k in reader.keys():
                x = torch.tensor(reader[k][1], dtype=torch.float32)[None]
                with torch.no_grad():
                    enc, _ = model.encode(x, torch.tensor([x.shape[1]]))
                    d[k] = model.ctc.log_softmax(enc)[0].numpy()
            np.savez(f, **d)
        z = np.load(f)
        out[s] = {k: z[k] for k in z.files}
    return out


def decode(post: Dict[str, np.ndarray], tokens: Sequence[str], lexicon: Path, arpa: Path,
           lm_weight: float, word_score: float, beam: int) -> Tuple[Dict[str, str], float]:
    from torchaudio.models.decoder import ctc_decoder
    dec = ctc_decoder(lexicon=str(lexicon), tokens=list(tokens), lm=str(arpa), beam_size=beam,
                      beam_threshold=100.0, lm_weight=lm_weight, word_score=word_score,
                      blank_token="<blank>", sil_token="<space>", unk_word="<unk>")
    hyp, t0 = {}, time.perf_counter()
    for k, lp in post.items():
        best = dec(torch.from_numpy(lp)[None].float())[0][0]
        hyp[k] = " ".join(w for w in best.words if w)
    return hyp, time.perf_counter() - t0


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exp", default="base/exp/asr_abl_base", help="the acoustic model (an ASR experiment dir)")
    p.add_argument("--data", default="base/data", help="data dir with the sets, token_list/ and lm_pool.txt")
    p.add_argument("--dump", default="base/dump/raw", help="formatted sets (their utt2num_samples give the audio length)")
    p.add_argument("--lm_text", default=None, help="LM text, one sentence a line (default <data>/lm_pool.txt)")
    p.add_argument("--baseline", default="decode_decode_ctc_lm_valid.loss.ave_lm_char",
                   help="the char-LM decoding of --exp compared against")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--grid", default="1.5,2.0,2.5:0,1", help="LM weights : word scores, tuned on dev")
    p.add_argument("--beams", default="50,200,500,1500", help="beam sizes measured at the best point")
    p.add_argument("--work", default="bench/scratch/word_lexicon", help="posteriors, lexicon, ARPA (not committed)")
    p.add_argument("--out_dir", default=str(ROOT / "bench" / "results"))
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        import torchaudio.models.decoder  # noqa: F401
        from flashlight.lib.text import decoder  # noqa: F401
    except ImportError as e:
        sys.exit(f"word_lexicon: needs torchaudio's flashlight decoder ({e}); .venv/bin/python -m pip install flashlight-text")
    torch.set_num_threads(1)
    exp, data, work, dump = Path(args.exp), Path(args.data), Path(args.work), Path(args.dump)
    lm_text = Path(args.lm_text) if args.lm_text else data / "lm_pool.txt"
    for need in (exp / "config.yaml", exp / "valid.loss.ave.pth", lm_text):
        if not need.exists():
            sys.exit(f"word_lexicon: {need} is missing (make the ablation's base row: local/run_ablation.sh --rows base)")
    work.mkdir(parents=True, exist_ok=True)
    tokens = [t for _, t in read_lines(next((data / "token_list").glob("*/tokens.txt")))]
    sentences = [s for _, s in read_lines(lm_text) if s.strip()]
    vocab = sorted({w for s in sentences for w in s.split()})
    bad = sorted({c for w in vocab for c in w if c not in tokens})
    if bad:
        sys.exit(f"word_lexicon: {lm_text} has characters outside the model's tokens: {bad}")
    lexicon, arpa = work / "lexicon.txt", work / f"word{args.order}.arpa"
    lexicon.write_text("".join(f"{w}\t{' '.join(w)} <space>\n" for w in vocab))
    prob, bow = kneser_ney(sentences, args.order)
    write_arpa(prob, bow, arpa)
    post = posteriors(exp, data, work / exp.name)
    refs = {s: read_kv(data / s / "text") for s in SETS}
    oov = {s: 100.0 * sum(w not in set(vocab) for t in refs[s].values() for w in t.split())
           / max(1, sum(len(t.split()) for t in refs[s].values())) for s in SETS}

    lws, wss = ([float(x) for x in part.split(",")] for part in args.grid.split(":"))
    beam = max(int(b) for b in args.beams.split(","))
    tuning = []
    for lw, ws in itertools.product(lws, wss):
        hyp, secs = decode(post["dev"], tokens, lexicon, arpa, lw, ws, beam)
        tuning.append({"lm_weight": lw, "word_score": ws, "beam": beam,
                       "dev_wer": 100.0 * corpus_counts(refs["dev"], hyp).rate})
        print(tuning[-1], flush=True)
    best = min(tuning, key=lambda r: r["dev_wer"])
    beams = []
    for b in sorted(int(x) for x in args.beams.split(",")):
        hyp, secs = decode(post["dev"], tokens, lexicon, arpa, best["lm_weight"], best["word_score"], b)
        beams.append({"beam": b, "dev_wer": 100.0 * corpus_counts(refs["dev"], hyp).rate,
                      "rtf_search": secs / audio_seconds(dump / "dev")})
    rows = []
    for s in SETS:
        hyp, secs = decode(post[s], tokens, lexicon, arpa, best["lm_weight"], best["word_score"], beam)
        base = read_kv(exp / args.baseline / s / "text")
        boot = paired_bootstrap(refs[s], hyp, base)
        rows.append({"set": s, "oov_percent": oov[s], "wer_lexicon": 100.0 * corpus_counts(refs[s], hyp).rate,
                     "wer_char_lm": 100.0 * corpus_counts(refs[s], base).rate, **{f"delta_{k}": v for k, v in boot.items()},
                     "rtf_search": secs / audio_seconds(dump / s)})
    res = {"date": datetime.date.today().isoformat(), "cpu": cpu_model(), "threads": 1,
           "command": "PYTHONPATH=. .venv/bin/python bench/word_lexicon.py " + " ".join(cmd if cmd is not None else sys.argv[1:]),
           "exp": rel(exp), "lm_text": rel(lm_text), "vocabulary": len(vocab), "lm_sentences": len(sentences),
           "order": args.order, "tuning": tuning, "best": best, "beams": beams, "sets": rows}
    md = [f"# Lexicon + word {args.order}-gram CTC decoding vs the char-LM decoding",
          "", f"`{res['command'].strip()}` ({res['date']}, {res['cpu']}, one thread).",
          f"Acoustic model `{res['exp']}`; lexicon and {args.order}-gram from `{res['lm_text']}` "
          f"({len(sentences)} sentences, {len(vocab)} words). Tuned on dev: LM weight {best['lm_weight']}, "
          f"word score {best['word_score']}, beam {beam}.", "",
          "| set | OOV % | WER lexicon | WER char LM | delta (95% CI) | RTF search |",
          "|---|---:|---:|---:|---|---:|"]
    for r in rows:
        md.append(f"| {r['set']} | {r['oov_percent']:.1f} | {r['wer_lexicon']:.1f} | {r['wer_char_lm']:.1f} | "
                  f"{r['delta_delta']:+.1f} ({r['delta_lo']:+.1f} .. {r['delta_hi']:+.1f}) | {r['rtf_search']:.3f} |")
    md += ["", "Dev WER by beam at the best point (RTF of the search alone, without the encoder):", "",
           "| beam | dev WER | RTF search |", "|---:|---:|---:|"]
    md += [f"| {b['beam']} | {b['dev_wer']:.1f} | {b['rtf_search']:.3f} |" for b in beams]
    md += ["", "Dev tuning grid:", "", "| LM weight | word score | dev WER |", "|---:|---:|---:|"]
    md += [f"| {t['lm_weight']} | {t['word_score']} | {t['dev_wer']:.1f} |" for t in tuning]
    write_results(Path(args.out_dir), "word_lexicon", res, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
