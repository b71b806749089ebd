"""Incremental RNN-T (transducer) decoding: greedy, frame by frame.

:class:`TransducerGreedy` takes encoder frames a chunk at a time and carries the
prediction network's state (its last output and recurrent state) across
chunks, so the hypothesis after any chunk is the one a whole-utterance greedy
decode of the frames so far gives, and the final one is ESPnet's
``BeamSearchTransducer.greedy_search`` of the whole encoder output (at most
one token per frame, as there: tested).
"""

from __future__ import annotations

from typing import List

import torch


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


class TransducerGreedy(GreedyTransducerLoop):
    """Greedy RNN-T search over ESPnet's ``TransducerDecoder`` and ``JointNetwork``.

    Args:
        decoder: the model's prediction network (``model.decoder``, ``decoder: transducer``).
        joint_network: ``model.joint_network``.
        blank: the blank id (``model.blank_id``), also the prediction network's start symbol.
    """

    def __init__(self, decoder: torch.nn.Module, joint_network: torch.nn.Module, blank: int = 0):
        if not hasattr(decoder, "rnn_forward") or not hasattr(decoder, "init_state"):
            raise TypeError(f"{type(decoder).__name__} is not ESPnet's transducer prediction network "
                            "(decoder: transducer)")
        self.decoder, self.joint, self.blank = decoder, joint_network, blank
        self.reset()

    def _start(self) -> None:
        self.state = self.decoder.init_state(1)
        self._predict(self.blank)

    @torch.no_grad()
    def _predict(self, token: int) -> None:
        label = torch.full((1, 1), token, dtype=torch.long, device=self.decoder.device)
        out, self.state = self.decoder.rnn_forward(self.decoder.embed(label), self.state)
        self.dec_out = out[0][0]  # (D_dec,)

    @torch.no_grad()
    def _best(self, frame: torch.Tensor) -> int:
        return int(torch.argmax(self.joint(frame, self.dec_out), dim=-1))
