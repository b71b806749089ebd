"""RNN-T searches over a transducer export's ``decoder.onnx`` and ``joiner.onnx`` (ONNX Runtime).

The loops of :mod:`~espnet_omni.inference.transducer_decoder` with the networks run by ONNX
Runtime: :class:`OnnxTransducerGreedy` (greedy) and :class:`OnnxTransducerBeam` (modified beam
search with LM shallow fusion, the hypotheses of a frame in one ``decoder.onnx`` and one
``joiner.onnx`` call). ``decoder.onnx`` is one prediction-network step: ``token (N, 1)``, ``h``,
``c`` ``(L, N, H)`` -> ``dec_out (N, D_dec)``, ``new_h``, ``new_c``; ``joiner.onnx``:
``encoder_out (N, D_enc)``, ``dec_out (N, D_dec)`` -> ``logits (N, V)``
(:mod:`espnet_omni.export.onnx_export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from espnet_omni.inference.lm_scorer import LMScorer
from espnet_omni.inference.onnx_session import graph_session
from espnet_omni.inference.transducer_decoder import (
    GreedyTransducerLoop,
    TransducerBeamLoop,
    wants_beam_search,
)

State = Tuple[np.ndarray, np.ndarray]  # h, c: (L, 1, H) each


class _OnnxNetworks:
    """The two graphs and the prediction network's shape (``onnx.json``'s ``transducer``)."""

    def _setup(self, decoder, joiner, meta: dict) -> None:
        self.decoder, self.joiner = decoder, joiner
        t = meta["transducer"]
        self.shape = (t["layers"], 1, t["hidden"])
        self.blank = int(meta["blank_id"])

    def _zero_state(self) -> State:
        return np.zeros(self.shape, np.float32), np.zeros(self.shape, np.float32)

    def _step(self, tokens: Sequence[int], h: np.ndarray, c: np.ndarray):
        """``tokens`` (N,) from ``h``, ``c`` ``(L, N, H)`` -> ``dec_out (N, D_dec)``, ``h``, ``c``."""
        return self.decoder.run(None, {"token": np.asarray(tokens, np.int64)[:, None], "h": h, "c": c})

    def _logits(self, frame: np.ndarray, dec_out: np.ndarray) -> np.ndarray:
        """One ``(D_enc,)`` frame with ``(N, D_dec)`` prediction outputs -> ``(N, V)`` logits."""
        enc = np.repeat(np.asarray(frame, np.float32)[None], dec_out.shape[0], axis=0)
        return self.joiner.run(None, {"encoder_out": enc, "dec_out": dec_out})[0]


class OnnxTransducerGreedy(_OnnxNetworks, GreedyTransducerLoop):
    """Greedy RNN-T over ``decoder.onnx`` and ``joiner.onnx`` (the loop of
    :class:`~espnet_omni.inference.transducer_decoder.TransducerGreedy`): the prediction
    network's output and state carried across chunks."""

    def __init__(self, decoder, joiner, meta: dict):
        self._setup(decoder, joiner, meta)
        self.reset()

    def _start(self) -> None:
        self.h, self.c = self._zero_state()
        self._predict(self.blank)

    def _predict(self, token: int) -> None:
        self.dec_out, self.h, self.c = self._step([token], self.h, self.c)

    def _best(self, frame: np.ndarray) -> int:
        return int(np.argmax(self._logits(frame, self.dec_out)[0]))


class OnnxTransducerBeam(_OnnxNetworks, TransducerBeamLoop):
    """Modified beam search with LM shallow fusion
    (:class:`~espnet_omni.inference.transducer_decoder.TransducerBeamLoop`) over ``decoder.onnx``
    and ``joiner.onnx``, all hypotheses of a frame in one call of each.

    Args:
        decoder, joiner: their ONNX Runtime sessions.
        meta: ``onnx.json``.
        beam_size, lm, lm_weight, length_bonus: see ``TransducerBeamLoop``; ``lm``:
            :class:`~espnet_omni.inference.onnx_lm.OnnxLM` (or any ``LMScorer``).
        where: the export dir, named in errors.

    Raises:
        ValueError: ``beam_size > 1`` with a ``decoder.onnx`` exported for one hypothesis at a
            time (before the batch axis): re-export.
    """

    def __init__(self, decoder, joiner, meta: dict, beam_size: int, lm: Optional[LMScorer] = None,
                 lm_weight: float = 0.0, length_bonus: float = 0.0, where: str = "the export"):
        self._setup(decoder, joiner, meta)
        if beam_size > 1 and decoder.get_inputs()[0].shape[0] == 1:
            raise ValueError(f"{where}/decoder.onnx steps one hypothesis at a time (exported before its batch "
                             f"axis): re-export with python -m espnet_omni.bin.export_onnx for beam_size {beam_size}")
        super().__init__(beam_size, len(meta["token_list"]), lm, lm_weight, length_bonus, self.blank)

    def _initial(self):
        return self._predict([self.blank], [self._zero_state()])[0]

    def _predict(self, tokens: List[int], states: List[State]):
        h = np.concatenate([s[0] for s in states], axis=1)  # (L, N, H)
        c = np.concatenate([s[1] for s in states], axis=1)
        out, h, c = self._step(tokens, h, c)
        return [(out[i], (h[:, i: i + 1], c[:, i: i + 1])) for i in range(len(tokens))]

    def _joint(self, frame: np.ndarray, dec_outs) -> np.ndarray:
        return self._logits(frame, np.stack(dec_outs))


def make_onnx_transducer_search(onnx_dir: Path, meta: dict, session_options, beam_size: int = 1,
                                lm: Optional[LMScorer] = None, lm_weight: float = 0.0,
                                length_bonus: float = 0.0):
    """The export's ``decoder.onnx`` and ``joiner.onnx`` in ONNX Runtime, searched greedily (beam 1
    without an LM or a length bonus) or by :class:`OnnxTransducerBeam`."""
    graph = {n: graph_session(onnx_dir, meta, n, session_options) for n in ("decoder", "joiner")}
    if wants_beam_search(beam_size, lm, lm_weight, length_bonus, len(meta["token_list"])):
        return OnnxTransducerBeam(graph["decoder"], graph["joiner"], meta, beam_size, lm, lm_weight,
                                  length_bonus, where=str(onnx_dir))
    return OnnxTransducerGreedy(graph["decoder"], graph["joiner"], meta)
