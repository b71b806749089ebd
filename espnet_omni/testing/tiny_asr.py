"""Tiny CTC-only ASR corpus and flag sets for smoke tests (bin, train, export).

Not a test module. All paths are relative to the corpus root: run the
entries with that root as the working directory (as a recipe does), so
``pack`` stores relative paths and ``unpack`` can rewrite them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

FS = 16000  # Hz; ESPnet DefaultFrontend's default
TEXTS = ("ab", "ba", "abc", "cab", "bca", "ca", "acb", "cba")
# 0.5 s to 0.85 s: conv2d subsampling (x4) of 10 ms frames keeps >= 11 frames
DURATIONS_S = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)
TRAIN, VALID, TOKENS = Path("data/train"), Path("data/valid"), Path("data/tokens.txt")
N_VALID = 2


def write_corpus(root: Path, seed: int = 0) -> None:
    """Write ``root/data/{train,valid}/{wav.scp,text}``, wavs, char tokens.

    8 train and 2 valid utterances; each a sine (pitch set by the first
    character) plus noise. ``wav.scp`` paths are relative to ``root``.
    """
    rng = np.random.default_rng(seed)
    (root / "data/wav").mkdir(parents=True, exist_ok=True)
    for split, indices in ((TRAIN, range(8)), (VALID, range(N_VALID))):
        (root / split).mkdir(parents=True, exist_ok=True)
        scp, txt = [], []
        for i in indices:
            utt = f"{split.name}_utt{i}"
            n = int(DURATIONS_S[i] * FS)
            t = np.arange(n) / FS
            freq = 200.0 + 100.0 * (ord(TEXTS[i][0]) - ord("a"))
            x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(n)
            wav = Path("data/wav") / f"{utt}.wav"
            soundfile.write(root / wav, x.astype(np.float32), FS, subtype="PCM_16")
            scp.append(f"{utt} {wav}\n")
            txt.append(f"{utt} {TEXTS[i]}\n")
        (root / split / "wav.scp").write_text("".join(scp))
        (root / split / "text").write_text("".join(txt))
    # ESPnet convention: <blank> first, <sos/eos> last.
    tokens = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
    (root / TOKENS).write_text("\n".join(tokens) + "\n")


def _data_flags() -> list[str]:
    flags = []
    for prefix, split in (("train", TRAIN), ("valid", VALID)):
        flags += [
            f"--{prefix}_data_path_and_name_and_type", f"{split}/wav.scp,speech,sound",
            f"--{prefix}_data_path_and_name_and_type", f"{split}/text,text,text",
        ]
    return flags


def _model_flags(encoder: str) -> list[str]:
    """Tokenizer and tiny CTC-only conformer (shared by stats and training).

    ``encoder``: ``conformer`` or ``omni_conformer`` (same constructor kwargs).
    """
    return [
        "--ngpu", "0",
        "--num_workers", "0",
        "--seed", "0",
        "--use_preprocessor", "true",
        "--token_type", "char",
        "--token_list", str(TOKENS),
        "--frontend_conf", "{n_fft: 512, hop_length: 160, n_mels: 40}",
        "--encoder", encoder,
        "--encoder_conf",
        "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 1,"
        " input_layer: conv2d, cnn_module_kernel: 3, dropout_rate: 0.0,"
        " positional_dropout_rate: 0.0, attention_dropout_rate: 0.0,"
        " rel_pos_type: latest}",
        "--decoder", "none",
        "--model_conf", "{ctc_weight: 1.0}",
    ]


def collect_stats_flags(out: Path, encoder: str = "conformer") -> list[str]:
    """Stats pass: writes out/{train,valid}/{speech,text}_shape, feats_stats.npz."""
    return [
        "--collect_stats", "true",
        "--normalize", "none",
        "--batch_type", "unsorted",
        "--batch_size", "4",
        "--train_shape_file", f"{TRAIN}/wav.scp",
        "--valid_shape_file", f"{VALID}/wav.scp",
        "--output_dir", str(out),
    ] + _model_flags(encoder) + _data_flags()


def train_flags(stats: Path, out: Path, encoder: str = "conformer") -> list[str]:
    """One epoch of CTC-only training, global MVN from the stats pass."""
    return [
        "--normalize", "global_mvn",
        "--normalize_conf", f"stats_file={stats}/train/feats_stats.npz",
        "--train_shape_file", f"{stats}/train/speech_shape",
        "--train_shape_file", f"{stats}/train/text_shape",
        "--valid_shape_file", f"{stats}/valid/speech_shape",
        "--valid_shape_file", f"{stats}/valid/text_shape",
        "--batch_type", "folded",
        "--batch_size", "4",
        "--fold_length", "80000",
        "--fold_length", "150",
        "--max_epoch", "1",
        "--optim", "adam",
        "--optim_conf", "{lr: 0.002}",
        "--best_model_criterion", "valid,loss,min",
        "--keep_nbest_models", "1",
        "--num_att_plot", "0",  # attention plots cost seconds (matplotlib)
        "--use_matplotlib", "false",
        "--use_tensorboard", "false",
        "--output_dir", str(out),
    ] + _model_flags(encoder) + _data_flags()


def decode_flags(config: Path, model: Path, out: Path) -> list[str]:
    """CTC-only greedy decoding of the valid set (beam 1, no LM)."""
    return [
        "--ngpu", "0",
        "--batch_size", "1",
        "--ctc_weight", "1.0",
        "--beam_size", "1",
        "--lm_weight", "0.0",
        "--data_path_and_name_and_type", f"{VALID}/wav.scp,speech,sound",
        "--asr_train_config", str(config),
        "--asr_model_file", str(model),
        "--output_dir", str(out),
    ]


def train_tiny_supernet(root: Path, stats: Path, exp: Path, omni_conf: str = "{sampler: {rule: sandwich, num_subnets: 2}}",
                        extra: Sequence[str] = ()) -> None:
    """Write the tiny corpus under ``root`` and train a 1-epoch ``omni_conformer``
    supernet there (paths relative to ``root``): ``root/exp/config.yaml`` and
    ``root/exp/valid.loss.best.pth``; ``extra``: more training flags (e.g.
    ``--encoder_conf mask_granularity=group``). Imports ESPnet (through our entry point)."""
    import os

    from espnet_omni.bin import asr_train

    write_corpus(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        asr_train.main(collect_stats_flags(stats, "omni_conformer"))
        asr_train.main(train_flags(stats, exp, "omni_conformer") + ["--omni_conf", omni_conf, *extra])
    finally:
        os.chdir(cwd)


def valid_wav(root: Path, idx: int = 0):
    """(samples,) float32 audio of the tiny corpus's ``idx``-th valid utterance under ``root``."""
    import soundfile

    path = sorted((Path(root) / "data/wav").glob("valid_*.wav"))[idx]
    return soundfile.read(path, dtype="float32")[0]


def randomize_encoder(model, seed: int = 0, std: float = 0.3) -> None:
    """Random encoder weights (masks refreshed): a tiny model trained one epoch emits only
    blanks, too easy a case for a decoder test."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.normal_(0.0, std)
    model.encoder.refresh_masks()
