"""Test dummies for tests/tasks (not a test module)."""

from __future__ import annotations

from pathlib import Path

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]


class TinyLinearEncoder(AbsEncoder):
    """One Linear layer: (B, T, D_in) -> (B, T, output_size), lengths unchanged."""

    def __init__(self, input_size: int, output_size: int = 8) -> None:
        super().__init__()
        self._output_size = output_size
        self.proj = torch.nn.Linear(input_size, output_size)

    def output_size(self) -> int:
        return self._output_size

    def forward(self, xs_pad, ilens, prev_states=None):
        return self.proj(xs_pad), ilens, None  # (B, T, output_size)


def write_tokens(directory: Path) -> Path:
    """Write a char token list; return its path."""
    path = directory / "tokens.txt"
    path.write_text("\n".join(TOKENS) + "\n")
    return path


def tiny_asr_cmd(token_list: Path, encoder: str, encoder_conf: str) -> list[str]:
    """Parser flags for a tiny CTC-only ASR model with the given encoder."""
    return [
        "--token_list", str(token_list),
        "--frontend_conf", "{n_fft: 128, hop_length: 64, n_mels: 10}",
        "--normalize", "none",
        "--encoder", encoder,
        "--encoder_conf", encoder_conf,
        "--decoder", "none",
        "--model_conf", "{ctc_weight: 1.0}",
    ]
