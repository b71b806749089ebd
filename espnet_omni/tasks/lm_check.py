"""Refuse a language model built for another token list, before decoding starts.

ESPnet's shallow fusion adds the LM's log-probability of token ``i`` to the
ASR's: an LM trained with another token list (another ``tokens.txt``, or BPE
against characters) scores the wrong symbols, or fails deep inside the beam
search with a shape error.  These checks name both files instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

import yaml

# ARPA n-gram symbols that are not tokens of the model.
_ARPA_SPECIAL = {"<s>", "</s>", "<unk>"}


class TokenListMismatch(ValueError):
    """An LM or n-gram whose symbols are not the ASR model's tokens."""


def _token_list(config: Path) -> List[str]:
    """The token list of an ESPnet training config (inline list or a tokens.txt path)."""
    with Path(config).open(encoding="utf-8") as f:
        conf = yaml.safe_load(f)
    if not isinstance(conf, dict) or "token_list" not in conf:
        raise TokenListMismatch(f"{config}: no 'token_list' key; expected an ESPnet training config")
    tl = conf["token_list"]
    if isinstance(tl, str):
        path = Path(tl)
        if not path.is_file():
            raise TokenListMismatch(f"{config}: token_list {tl} not found")
        tl = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    return [str(t) for t in tl]


def check_lm_token_list(asr_train_config: Union[str, Path], lm_train_config: Union[str, Path]) -> None:
    """Raise :class:`TokenListMismatch` unless both configs have the same token list."""
    asr, lm = _token_list(Path(asr_train_config)), _token_list(Path(lm_train_config))
    if asr == lm:
        return
    i = next((k for k, (a, b) in enumerate(zip(asr, lm)) if a != b), min(len(asr), len(lm)))
    a = repr(asr[i]) if i < len(asr) else "(end)"
    b = repr(lm[i]) if i < len(lm) else "(end)"
    raise TokenListMismatch(
        f"{lm_train_config}: the LM was trained with another token list than the ASR model "
        f"{asr_train_config} ({len(lm)} vs {len(asr)} tokens; first difference at index {i}: "
        f"LM {b}, ASR {a}); train the LM with the ASR model's token list (run.sh stage 6)"
    )


def check_ngram_tokens(ngram_file: Union[str, Path], asr_train_config: Union[str, Path]) -> None:
    """Raise :class:`TokenListMismatch` if an ARPA n-gram has a unigram the model cannot emit.

    Only ARPA text is read (its ``\\1-grams:`` section); a binary KenLM file is
    left to KenLM.
    """
    path = Path(ngram_file)
    if not path.is_file():
        raise TokenListMismatch(f"{path}: n-gram file not found")
    with path.open("rb") as f:
        if f.read(64).lstrip()[:6] != b"\\data\\":
            return
    tokens = set(_token_list(Path(asr_train_config)))
    section: Optional[str] = None
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if line.startswith("\\"):
                section = line
                if section not in ("\\data\\", "\\1-grams:"):
                    break
                continue
            if section == "\\1-grams:" and line:
                parts = line.split()
                if len(parts) >= 2 and parts[1] not in tokens and parts[1] not in _ARPA_SPECIAL:
                    raise TokenListMismatch(
                        f"{path}:{lineno}: unigram {parts[1]!r} is not a token of the ASR model "
                        f"{asr_train_config}; build the n-gram on the model's tokens"
                    )
