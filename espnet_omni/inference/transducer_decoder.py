"""Incremental RNN-T (transducer) decoding, frame by frame: greedy, and modified beam search
with LM shallow fusion.

Both take encoder frames a chunk at a time and carry the prediction network's state (its last
output and recurrent state, per hypothesis) across chunks, so the hypotheses after any chunk are
those a whole-utterance run of the same search over the frames so far gives:

- :class:`TransducerGreedy`: the final tokens are ESPnet's
  ``BeamSearchTransducer.greedy_search`` of the whole encoder output (at most one token per
  frame, as there: tested);
- :class:`TransducerBeamSearch`: icefall's ``modified_beam_search`` (at most one token per frame,
  the ``beam_size`` best of all hypotheses' extensions, merged by token sequence) with an LM
  fused (:mod:`~espnet_omni.inference.lm_scorer`); beam 1 without an LM is the greedy search.

Each search is a loop over frames (:class:`GreedyTransducerLoop`, :class:`TransducerBeamLoop`)
whatever runs the networks: these classes run ESPnet's ``TransducerDecoder`` and
``JointNetwork`` in PyTorch; :mod:`~espnet_omni.inference.onnx_transducer` runs
``decoder.onnx`` and ``joiner.onnx`` in ONNX Runtime.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_omni.inference.lm_scorer import FusedBeam, LMScorer, LMState


class GreedyTransducerLoop:
    """The frame-synchronous greedy RNN-T loop, whatever runs the networks.

    A subclass gives ``_start()`` (the prediction network's state and output for
    the start symbol, blank), ``_best(frame)`` (the joint network's best token for
    one encoder frame and the current prediction output) and ``_predict(token)``
    (the prediction network advanced by ``token``). At most one token per frame,
    as ESPnet's ``BeamSearchTransducer.greedy_search``.
    """

    blank: int

    def reset(self) -> None:
        """Start a new utterance."""
        self.tokens: List[int] = []
        self._start()

    def step(self, enc) -> None:
        """Consume ``(T, D_enc)`` encoder frames."""
        for frame in enc:
            token = self._best(frame)
            if token != self.blank:
                self.tokens.append(token)
                self._predict(token)

    def best(self) -> List[int]:
        """Token ids so far (no blanks)."""
        return list(self.tokens)

    def _start(self) -> None:
        raise NotImplementedError

    def _best(self, frame) -> int:
        raise NotImplementedError

    def _predict(self, token: int) -> None:
        raise NotImplementedError


def wants_beam_search(beam_size: int, lm: Optional[LMScorer] = None, lm_weight: float = 0.0,
                      length_bonus: float = 0.0, vocab_size: Optional[int] = None) -> bool:
    """Check a transducer search's options; True when they need :class:`TransducerBeamLoop`
    (beam > 1, an LM, or a length bonus), False for the greedy search.

    Raises:
        ValueError: ``beam_size < 1``; ``lm_weight`` without an LM; an LM over another
            vocabulary than the joint network's ``vocab_size`` outputs.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size}: must be >= 1")
    if lm is None and lm_weight:
        raise ValueError(f"lm_weight={lm_weight} without an LM: give the LM (--lm_train_config, "
                         "--lm_file) or lm_weight 0")
    if lm is not None and vocab_size is not None and lm.vocab_size != vocab_size:
        raise ValueError(f"the LM has {lm.vocab_size} tokens, the transducer's joint network {vocab_size} "
                         "outputs: fuse an LM trained on the ASR model's token list")
    return beam_size > 1 or lm is not None or bool(length_bonus)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``(B, V)`` logits, float64."""
    x = np.asarray(x, dtype=np.float64)
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best finite ``scores``, best first, ties by index."""
    live = np.flatnonzero(np.isfinite(scores))
    n = min(k, live.size)
    if n < live.size:
        live = live[np.argpartition(-scores[live], n - 1)[:n]]
    return live[np.lexsort((live, -scores[live]))]


class TransducerBeamLoop(FusedBeam):
    """Frame-synchronous modified beam search with LM shallow fusion, whatever runs the networks.

    icefall's ``modified_beam_search``: per encoder frame every hypothesis is extended by every
    token (blank: the same token sequence), at most one non-blank token per frame; the
    ``beam_size`` best of all extensions survive, those with the same token sequence merged
    (their transducer probabilities log-added). A hypothesis is ranked by

        log p_rnnt(alignments of its tokens so far)
        + lm_weight * log p_lm(tokens) + length_bonus * len(tokens)

    (the fusion part, kept apart, is the same for every alignment of the same tokens);
    :meth:`finalize` adds ``lm_weight * log p_lm(<eos> | tokens)``. Per frame the joint network
    runs once on all hypotheses (``(B, D_enc)``, ``(B, D_dec)``), and the prediction network and
    the LM once each on all new token sequences (batched): at most three calls.

    A subclass runs the networks:

    - ``_initial()`` -> ``(dec_out, state)``: the prediction network after the start symbol
      (blank), one hypothesis' output ``(D_dec,)`` and recurrent state;
    - ``_predict(tokens, states)`` -> ``[(dec_out, state), ...]``: ``states[i]`` advanced by
      ``tokens[i]``, one batched step;
    - ``_joint(frame, dec_outs)`` -> ``(B, V)`` logits of one ``(D_enc,)`` frame with each
      hypothesis' prediction output.

    Args:
        beam_size: hypotheses kept per frame.
        vocab_size: V, the joint network's outputs (checked against the LM's).
        lm: the LM (:class:`~espnet_omni.inference.lm_scorer.TorchLM`, ``OnnxLM``), or None.
        lm_weight: its weight (ESPnet's ``lm_weight``).
        length_bonus: added per token (ESPnet's ``penalty``).
        blank: the blank id (also the prediction network's start symbol).
    """

    def __init__(self, beam_size: int, vocab_size: int, lm: Optional[LMScorer] = None,
                 lm_weight: float = 0.0, length_bonus: float = 0.0, blank: int = 0):
        wants_beam_search(beam_size, lm, lm_weight, length_bonus, vocab_size)
        self.beam_size, self.vocab_size, self.blank = beam_size, vocab_size, blank
        self.lm, self.lm_weight, self.length_bonus = lm, float(lm_weight), float(length_bonus)
        self.reset()

    def reset(self) -> None:
        """Start a new utterance."""
        dec_out, state = self._initial()
        self.ys: List[Tuple[int, ...]] = [()]  # (B,) token sequences
        self.rnnt = np.zeros(1)  # (B,) log p_rnnt of each sequence (its alignments so far)
        self.fusion = np.zeros(1)  # (B,) lm_weight * log p_lm + length_bonus * len
        self.dec_out: List[Any] = [dec_out]  # (B,) prediction outputs (D_dec,)
        self.state: List[Any] = [state]  # (B,) prediction network states
        self.lm_states: List[Optional[LMState]] = [self.lm.start() if self.lm is not None else None]
        self.finalized = False

    def step(self, enc) -> None:
        """Consume ``(T, D_enc)`` encoder frames."""
        if self.finalized:
            raise RuntimeError("step() after finalize(): call reset() first")
        for frame in enc:
            self._frame(frame)

    def _frame(self, frame) -> None:
        logp = _log_softmax(self._joint(frame, self.dec_out))  # (B, V)
        v = logp.shape[1]
        fusion = np.repeat(self.fusion[:, None] + self.length_bonus, v, axis=1)  # (B, V) after a token
        if self.lm is not None:
            fusion += self.lm_weight * np.stack([s.logp for s in self.lm_states]).astype(np.float64)
        fusion[:, self.blank] = self.fusion  # blank: the same tokens
        rnnt = self.rnnt[:, None] + logp
        ys, new_rnnt, new_fusion, dec_out, state, lm_states = [], [], [], [], [], []
        index, grow = {}, []  # token sequence -> position; (position, parent, token) to run
        for i in _top((rnnt + fusion).ravel(), self.beam_size).tolist():
            parent, token = divmod(i, v)
            y = self.ys[parent] if token == self.blank else self.ys[parent] + (token,)
            at = index.get(y)
            if at is not None:  # another alignment of the same tokens
                new_rnnt[at] = np.logaddexp(new_rnnt[at], rnnt[parent, token])
                continue
            index[y] = len(ys)
            ys.append(y), new_rnnt.append(rnnt[parent, token]), new_fusion.append(fusion[parent, token])
            if token == self.blank:
                dec_out.append(self.dec_out[parent]), state.append(self.state[parent])
                lm_states.append(self.lm_states[parent])
            else:
                dec_out.append(None), state.append(None), lm_states.append(None)
                grow.append((len(ys) - 1, parent, token))
        if grow:  # the new token sequences: one batched prediction step, one batched LM step
            tokens = [t for _, _, t in grow]
            stepped = self._predict(tokens, [self.state[p] for _, p, _ in grow])
            lm_next = (self.lm.advance([self.lm_states[p] for _, p, _ in grow], tokens)
                       if self.lm is not None else [None] * len(grow))
            for (at, _, _), (d, s), ls in zip(grow, stepped, lm_next):
                dec_out[at], state[at], lm_states[at] = d, s, ls
        self.ys, self.dec_out, self.state, self.lm_states = ys, dec_out, state, lm_states
        self.rnnt, self.fusion = np.array(new_rnnt), np.array(new_fusion)

    def _hypotheses(self):
        return self.ys

    def _search_scores(self) -> np.ndarray:
        return self.rnnt

    def _initial(self) -> Tuple[Any, Any]:
        raise NotImplementedError

    def _predict(self, tokens: List[int], states: List[Any]) -> List[Tuple[Any, Any]]:
        raise NotImplementedError

    def _joint(self, frame, dec_outs: List[Any]) -> np.ndarray:
        raise NotImplementedError


def _check_decoder(decoder: torch.nn.Module) -> None:
    if not hasattr(decoder, "rnn_forward") or not hasattr(decoder, "init_state"):
        raise TypeError(f"{type(decoder).__name__} is not ESPnet's transducer prediction network "
                        "(decoder: transducer)")


@torch.no_grad()
def _torch_predict(decoder: torch.nn.Module, tokens: Sequence[int], state) -> Tuple[torch.Tensor, Any]:
    """ESPnet's ``TransducerDecoder`` advanced by ``tokens`` (N,) from the batched ``state``
    (``(h, c)``, each ``(L, N, H)``; ``c`` None for a GRU) -> ``(N, D_dec)`` outputs, new state."""
    labels = torch.tensor([[t] for t in tokens], dtype=torch.long, device=decoder.device)  # (N, 1)
    out, new = decoder.rnn_forward(decoder.embed(labels), state)
    return out[:, 0], new


class TransducerGreedy(GreedyTransducerLoop):
    """Greedy RNN-T search over ESPnet's ``TransducerDecoder`` and ``JointNetwork``.

    Args:
        decoder: the model's prediction network (``model.decoder``, ``decoder: transducer``).
        joint_network: ``model.joint_network``.
        blank: the blank id (``model.blank_id``), also the prediction network's start symbol.
    """

    def __init__(self, decoder: torch.nn.Module, joint_network: torch.nn.Module, blank: int = 0):
        _check_decoder(decoder)
        self.decoder, self.joint, self.blank = decoder, joint_network, blank
        self.reset()

    def _start(self) -> None:
        self.state = self.decoder.init_state(1)
        self._predict(self.blank)

    def _predict(self, token: int) -> None:
        out, self.state = _torch_predict(self.decoder, [token], self.state)
        self.dec_out = out[0]  # (D_dec,)

    @torch.no_grad()
    def _best(self, frame: torch.Tensor) -> int:
        return int(torch.argmax(self.joint(frame, self.dec_out), dim=-1))


class TransducerBeamSearch(TransducerBeamLoop):
    """Modified beam search with LM shallow fusion (:class:`TransducerBeamLoop`) over ESPnet's
    ``TransducerDecoder`` and ``JointNetwork``: the hypotheses' states batched with the decoder's
    own state API (``create_batch_states``, ``select_state``).

    Args:
        decoder: the model's prediction network (``model.decoder``, ``decoder: transducer``).
        joint_network: ``model.joint_network``.
        beam_size, lm, lm_weight, length_bonus: see :class:`TransducerBeamLoop`.
        blank: the blank id (``model.blank_id``).
    """

    def __init__(self, decoder: torch.nn.Module, joint_network: torch.nn.Module, beam_size: int,
                 lm: Optional[LMScorer] = None, lm_weight: float = 0.0, length_bonus: float = 0.0,
                 blank: int = 0):
        _check_decoder(decoder)
        self.decoder, self.joint = decoder, joint_network
        super().__init__(beam_size, joint_network.lin_out.out_features, lm, lm_weight, length_bonus, blank)

    def _initial(self):
        return self._predict([self.blank], [self.decoder.select_state(self.decoder.init_state(1), 0)])[0]

    def _predict(self, tokens, states):
        batch = self.decoder.create_batch_states(None, states)  # ((L, N, H), (L, N, H) or None)
        out, new = _torch_predict(self.decoder, tokens, batch)
        return [(out[i], self.decoder.select_state(new, i)) for i in range(len(tokens))]

    @torch.no_grad()
    def _joint(self, frame: torch.Tensor, dec_outs) -> np.ndarray:
        return self.joint(frame[None], torch.stack(dec_outs)).double().numpy()  # (B, V)


def make_transducer_search(decoder: torch.nn.Module, joint_network: torch.nn.Module, blank: int = 0,
                           beam_size: int = 1, lm: Optional[LMScorer] = None, lm_weight: float = 0.0,
                           length_bonus: float = 0.0):
    """Beam 1 without an LM or a length bonus: :class:`TransducerGreedy`; else
    :class:`TransducerBeamSearch` (the same tokens at beam 1 without an LM: tested)."""
    if wants_beam_search(beam_size, lm, lm_weight, length_bonus, joint_network.lin_out.out_features):
        return TransducerBeamSearch(decoder, joint_network, beam_size, lm, lm_weight, length_bonus, blank)
    return TransducerGreedy(decoder, joint_network, blank)
