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


class TransducerGreedy:
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

    @torch.no_grad()
    def _predict(self, token: int) -> None:
        """Run the prediction network on ``token``: its output and state for the next frames."""
        label = torch.full((1, 1), token, dtype=torch.long, device=self.decoder.device)
        out, self.state = self.decoder.rnn_forward(self.decoder.embed(label), self.state)
        self.dec_out = out[0][0]  # (D_dec,)

    def reset(self) -> None:
        """Start a new utterance."""
        self.tokens: List[int] = []
        self.state = self.decoder.init_state(1)
        self._predict(self.blank)

    @torch.no_grad()
    def step(self, enc: torch.Tensor) -> None:
        """Consume ``(T, D_enc)`` encoder frames."""
        for frame in enc:
            token = int(torch.argmax(self.joint(frame, self.dec_out), dim=-1))
            if token != self.blank:
                self.tokens.append(token)
                self._predict(token)

    def best(self) -> List[int]:
        """Token ids so far (no blanks)."""
        return list(self.tokens)
