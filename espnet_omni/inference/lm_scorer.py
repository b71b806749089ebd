"""Language models for streaming shallow fusion: one LM step for a batch of prefixes.

A streaming decoder (:class:`~espnet_omni.inference.ctc_decoder.CTCPrefixBeamLM`) keeps one
:class:`LMState` per live prefix: the LM's recurrent state after the prefix and its
log-distribution of the next token. When prefixes grow, the new tokens of all of them go
through the LM in **one batched call** (:meth:`LMScorer.advance`).

Two runtimes give the same interface:

- :class:`TorchLM`: any ESPnet LM (``lm: seq_rnn``, ``lm: transformer``) through its
  ``batch_score`` (the scorer interface of ESPnet's own beam search), built from
  ``--lm_train_config`` / ``--lm_file`` like ``espnet2.bin.asr_inference``;
- ``OnnxLM`` (:mod:`espnet_omni.inference.onnx_lm`): ``lm.onnx``, one LM step whose
  recurrent state is explicit inputs and outputs.

Usage::

    lm = TorchLM.from_files("exp/lm_char/config.yaml", "exp/lm_char/valid.loss.ave.pth")
    s = lm.start()                       # after <sos>: s.logp is (V,) log p(token | <sos>)
    s1, s2 = lm.advance([s, s], [5, 7])  # both in one LM call
    s1.logp[lm.eos]                      # log p(<eos> | token 5)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch


@dataclass(frozen=True)
class LMState:
    """The LM after a prefix.

    Attributes:
        tokens: the prefix (token ids, no ``<sos>``).
        state: the runtime's recurrent state after it (opaque to the decoder).
        logp: ``(V,)`` float32 log-probabilities of the next token (``<eos>`` included).
    """

    tokens: Tuple[int, ...]
    state: Any
    logp: np.ndarray


class LMScorer:
    """A batched next-token LM. Subclasses give :meth:`_score`.

    Attributes:
        sos: the start symbol fed first (ESPnet: the last token, ``<sos/eos>``).
        eos: the end symbol whose probability ends a hypothesis (ESPnet: the same id).
        vocab_size: V.
    """

    sos: int
    eos: int
    vocab_size: int

    def start(self) -> LMState:
        """The state after ``<sos>`` (nothing decoded yet)."""
        return self._score([()], [None], [self.sos])[0]

    def advance(self, parents: Sequence[LMState], tokens: Sequence[int]) -> List[LMState]:
        """Each ``parents[i]`` advanced by ``tokens[i]``, all in one batched step."""
        if len(parents) != len(tokens):
            raise ValueError(f"{len(parents)} parents but {len(tokens)} tokens")
        if not parents:
            return []
        prefixes = [p.tokens + (int(t),) for p, t in zip(parents, tokens)]
        return self._score(prefixes, [p.state for p in parents], [int(t) for t in tokens])

    def _score(self, prefixes: List[Tuple[int, ...]], states: List[Any], last: List[int]) -> List[LMState]:
        """``prefixes[i]`` (its last token ``last[i]``; ``()`` with ``<sos>``) from ``states[i]``
        (``None``: the initial state) -> one :class:`LMState` each."""
        raise NotImplementedError


class FusedBeam:
    """What a beam search with LM shallow fusion shares, whatever it searches (CTC prefixes,
    transducer hypotheses): per hypothesis its search score (:meth:`_search_scores`), its fusion
    score ``fusion`` (``lm_weight * log p_lm + length_bonus * len``) and LM state ``lm_states``;
    :meth:`finalize` adds the LM's end of sentence; ranking by the sum.

    A subclass sets ``lm``, ``lm_weight``, ``fusion``, ``lm_states``, ``finalized`` and gives
    :meth:`_hypotheses` and :meth:`_search_scores`.
    """

    lm: "LMScorer | None"
    lm_weight: float
    fusion: np.ndarray
    lm_states: list
    finalized: bool

    def _hypotheses(self) -> Sequence[Tuple[int, ...]]:
        raise NotImplementedError

    def _search_scores(self) -> np.ndarray:
        raise NotImplementedError

    def finalize(self) -> None:
        """The utterance ended: add the LM's end-of-sentence score; later :meth:`best` ranks by it."""
        if not self.finalized and self.lm is not None:
            self.fusion = self.fusion + self.lm_weight * np.array(
                [float(s.logp[self.lm.eos]) for s in self.lm_states])
        self.finalized = True

    def scores(self) -> np.ndarray:
        """(B,) total score of each hypothesis: search + fusion (+ end of sentence once finalized)."""
        return self._search_scores() + self.fusion

    def nbest(self) -> List[Tuple[List[int], float]]:
        """Token sequences (no blanks) with their total scores, best first (ties: beam order)."""
        scores, hyps = self.scores(), self._hypotheses()
        order = sorted(range(len(hyps)), key=lambda i: (-scores[i], i))
        return [(list(hyps[i]), float(scores[i])) for i in order]

    def best(self) -> List[int]:
        """The best token ids so far (no blanks)."""
        return self.nbest()[0][0]


class TorchLM(LMScorer):
    """An ESPnet LM (``ESPnetLanguageModel.lm``: ``AbsLM``) through ``batch_score``.

    An RNN LM (``SequentialRNNLM``) reads only the last token and its state: every prefix
    goes in one call. Another LM (a Transformer reads the whole prefix) gets one call per
    prefix length.
    """

    def __init__(self, lm: torch.nn.Module, vocab_size: int):
        from espnet2.lm.seq_rnn_lm import SequentialRNNLM

        lm.eval()
        self.lm = lm
        self.vocab_size = vocab_size
        self.sos = self.eos = vocab_size - 1  # ESPnet: <sos/eos> is the last token
        self.last_token_only = isinstance(lm, SequentialRNNLM)

    @classmethod
    def from_files(cls, lm_train_config: Union[str, Path], lm_file: Union[str, Path],
                   device: str = "cpu") -> "TorchLM":
        """Build from ESPnet's LM task files (``exp/lm_<tag>/config.yaml`` and a model)."""
        from espnet2.tasks.lm import LMTask

        model, args = LMTask.build_model_from_file(str(lm_train_config), str(lm_file), device)
        return cls(model.lm, len(args.token_list))

    @torch.no_grad()
    def _score(self, prefixes, states, last):
        if self.last_token_only and self.lm.rnn_type in ("LSTM", "GRU"):
            return self._rnn_step(prefixes, states, last)
        groups: Dict[int, List[int]] = {}
        if self.last_token_only:  # ys (B, 1): the last token (<sos> for the empty prefix)
            groups[0] = list(range(len(prefixes)))
            prefixes_in = [(t,) if p else () for p, t in zip(prefixes, last)]
        else:
            prefixes_in = prefixes
            for i, p in enumerate(prefixes):
                groups.setdefault(len(p), []).append(i)
        out: List[LMState] = [None] * len(prefixes)  # type: ignore[list-item]
        for n, idx in groups.items():
            ys = torch.tensor([(self.sos,) + prefixes_in[i] for i in idx],
                              dtype=torch.long)  # (B, n + 1): <sos> + prefix ((B, 1 or 2) for an RNN LM)
            if self.last_token_only:
                ys = ys[:, -1:]  # (B, 1)
            group_states = [states[i] for i in idx]
            if all(s is None for s in group_states):
                group_states = [None] * len(idx)
            logp, new_states = self.lm.batch_score(ys, group_states, None)  # (B, V)
            logp = logp.float().numpy()
            for k, i in enumerate(idx):
                out[i] = LMState(prefixes[i], new_states[k], logp[k])
        return out

    def _rnn_step(self, prefixes, states, last) -> List[LMState]:
        """One step of ``SequentialRNNLM`` (LSTM or GRU) by its cells: the batched step of
        ``batch_score`` without ``nn.LSTM``'s per-call set-up, which dominates at one frame
        (about 3x faster for 2 x 256 at batch 20 on one thread). States as ``batch_score``
        keeps them: ``(h, c)`` of ``(L, H)`` each (LSTM) or ``h`` ``(L, H)`` (GRU)."""
        lm, rnn = self.lm, self.lm.rnn
        lstm = lm.rnn_type == "LSTM"
        x = lm.encoder(torch.tensor([self.sos if not p else t for p, t in zip(prefixes, last)]))  # (B, E)
        n, layers = len(prefixes), rnn.num_layers
        if all(st is None for st in states):
            h = x.new_zeros(layers, n, rnn.hidden_size)  # (L, B, H)
            c = x.new_zeros(layers, n, rnn.hidden_size)
        elif lstm:
            h = torch.stack([st[0] for st in states], dim=1)
            c = torch.stack([st[1] for st in states], dim=1)
        else:
            h = torch.stack(list(states), dim=1)
        hs, cs = [], []
        for k in range(layers):
            w = [getattr(rnn, f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if lstm:
                x, ck = torch.lstm_cell(x, (h[k], c[k]), *w)
                cs.append(ck)
            else:
                x = torch.gru_cell(x, h[k], *w)
            hs.append(x)
        logp = lm.decoder(x).log_softmax(dim=-1).float().numpy()  # (B, V)
        h = torch.stack(hs)  # (L, B, H)
        if lstm:
            c = torch.stack(cs)
            new = [(h[:, i], c[:, i]) for i in range(n)]
        else:
            new = [h[:, i] for i in range(n)]
        return [LMState(prefixes[i], new[i], logp[i]) for i in range(n)]
