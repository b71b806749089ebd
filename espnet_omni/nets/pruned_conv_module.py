"""Conformer conv module with its dead channels computed in closed form.

In a row-pruned supernet a conv-module channel ``c`` whose GLU value row
*and* gate row are both masked outputs the constant
``u_c = b_value[c] * sigmoid(b_gate[c])`` (a masked row keeps its bias).
That constant is not removable by folding it into a bias: the padded frames
are zeroed before the depthwise conv and the conv zero-pads the sequence, so
the depthwise output of a constant channel varies over the first and last
``kernel // 2`` frames of every utterance. It is, however, a function of the
utterance length only::

    S_c(t) = sum_{i : 0 <= t + i - p < L} w_c[i]        (p = kernel // 2)
    out(t) = W2[:, dead] @ act(scale * S(t) + shift)     (BatchNorm folded)

``S`` is a difference of two prefix sums of the kernel and depends on ``t``
only through the window of valid taps ``[lo, hi)``, ``lo`` in ``0..p``,
``hi`` in ``lo..k``: at most ``(p + 1)(k + 1)`` distinct output vectors,
tabulated once (:meth:`PrunedConvolutionModule.dead_table`) and looked up
per frame. :class:`PrunedConvolutionModule` therefore runs the stock path
(pointwise conv, GLU, depthwise conv, BatchNorm, activation, pointwise conv)
on the *live* channels only and adds the dead channels' output by lookup:
the same function as the masked supernet in eval mode (BatchNorm with
running statistics), with fewer and smaller convolutions. (Computing ``S``
per frame instead measured 0.32 ms per block at T=99, C=144 on one CPU
thread, the lookup ~0.05 ms: small ops cost their overhead.)

>>> m = PrunedConvolutionModule(8, 5, torch.nn.SiLU(), live_channels=3).eval()
>>> tuple(m.pointwise_conv1.weight.shape), tuple(m.dead_out.shape)
((6, 8, 1), (8, 5))
>>> m(torch.randn(2, 7, 8)).shape
torch.Size([2, 7, 8])
"""

from __future__ import annotations

import torch
from torch import nn

from espnet2.legacy.nets.pytorch_backend.conformer.convolution import (
    ConvolutionModule,
    mask_padded_frames,
)


def _lengths(mask_pad: torch.Tensor | None, batch: int, time: int) -> torch.Tensor:
    """Real frames per utterance ``(B, 1)``, as ``mask_padded_frames`` sees
    them (a mask it would ignore means no padding)."""
    if (
        mask_pad is None
        or mask_pad.dim() != 3
        or mask_pad.size(1) != 1
        or mask_pad.size(-1) != time
    ):
        return torch.full((batch, 1), time, dtype=torch.long)
    return mask_pad.ne(0).sum(-1)  # (B, 1)


class PrunedConvolutionModule(ConvolutionModule):
    """``ConvolutionModule`` over ``live_channels`` of ``channels``.

    Args:
        channels: model dim ``C`` (input and output size).
        kernel_size: depthwise kernel (odd).
        activation: the encoder's activation.
        live_channels: channels on the stock path (``1 .. C``); the other
            ``C - live_channels`` are dead channels (see module docstring).
        bias: as ``ConvolutionModule``.
        dead_channels: False when the removed channels contribute nothing
            (a structured export of a ``group`` supernet, whose dropped
            channels have zero ``pointwise_conv2`` columns): no dead-channel
            parameters, ``D = 0``.

    Parameters beyond the stock names (live shapes): ``dead_kernel_cumsum``
    ``(D, k + 1)``, ``dead_scale`` / ``dead_shift`` ``(D,)``, ``dead_out``
    ``(C, D)`` with ``D = C - live_channels``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        activation: nn.Module = nn.ReLU(),
        live_channels: int | None = None,
        bias: bool = True,
        dead_channels: bool = True,
    ) -> None:
        live = channels if live_channels is None else int(live_channels)
        if not 1 <= live <= channels:
            raise ValueError(
                f"live_channels={live_channels} must be in [1, channels={channels}]"
            )
        super().__init__(live, kernel_size, activation, bias)
        # input and output stay the model dim; the live channels sit between
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * live, 1, bias=bias)
        self.pointwise_conv2 = nn.Conv1d(live, channels, 1, bias=bias)
        dead = channels - live if dead_channels else 0
        self.kernel_size = kernel_size
        self.dead_kernel_cumsum = nn.Parameter(torch.zeros(dead, kernel_size + 1))
        self.dead_scale = nn.Parameter(torch.zeros(dead))
        self.dead_shift = nn.Parameter(torch.zeros(dead))
        self.dead_out = nn.Parameter(torch.zeros(channels, dead))
        self._table: torch.Tensor | None = None
        self._table_key: tuple | None = None

    def _dead_params(self) -> tuple[torch.Tensor, ...]:
        return (self.dead_kernel_cumsum, self.dead_scale, self.dead_shift, self.dead_out)

    def dead_table(self) -> torch.Tensor:
        """Dead channels' output for every ``(lo, hi)`` tap window:
        ``((p + 1) * (k + 1), C)``, row ``lo * (k + 1) + hi``.

        Cached in eval mode without grad (one table per parameter version,
        device and dtype), rebuilt on every call otherwise.
        """
        k, p = self.kernel_size, (self.kernel_size - 1) // 2
        params = self._dead_params()
        key = (*(t._version for t in params), self.dead_out.device, self.dead_out.dtype)
        cache = not self.training and not torch.is_grad_enabled()
        if cache and self._table_key == key:
            return self._table
        cum = self.dead_kernel_cumsum  # (D, k + 1)
        lo = torch.arange(p + 1, device=cum.device)
        hi = torch.arange(k + 1, device=cum.device)
        s = cum[:, None, :] - cum[:, : p + 1, None]  # (D, p + 1, k + 1)
        s = s * (hi[None, None, :] >= lo[None, :, None])  # empty window: 0
        z = self.activation(self.dead_scale[:, None, None] * s
                            + self.dead_shift[:, None, None])
        table = torch.einsum("cd,dlh->lhc", self.dead_out, z)
        table = table.reshape((p + 1) * (k + 1), -1).contiguous()
        if cache:
            self._table, self._table_key = table, key
        return table

    def dead_output(self, mask_pad: torch.Tensor | None, batch: int, time: int):
        """The dead channels' contribution ``(B, T, C)`` (see module docstring)."""
        k, p = self.kernel_size, (self.kernel_size - 1) // 2
        lengths = _lengths(mask_pad, batch, time).to(self.dead_out.device)  # (B, 1)
        p_minus_t = p - torch.arange(time, device=lengths.device)  # (T,)
        lo = p_minus_t.clamp(0, k)  # first valid tap
        hi = (lengths + p_minus_t).clamp(0, k)  # one past the last
        hi = torch.maximum(hi, lo)  # (B, T)
        return nn.functional.embedding(lo * (k + 1) + hi, self.dead_table())

    def forward(self, x: torch.Tensor, mask_pad: torch.Tensor | None = None):
        """(B, T, C) -> (B, T, C); ``mask_pad`` (B, 1, T) as the stock module."""
        x = x.transpose(1, 2)  # (B, C, T)
        batch, _, time = x.shape
        h = nn.functional.glu(self.pointwise_conv1(x), dim=1)  # (B, live, T)
        h = mask_padded_frames(h, mask_pad)
        h = self.activation(self.norm(self.depthwise_conv(h)))
        y = self.pointwise_conv2(h).transpose(1, 2)  # (B, T, C)
        if self.dead_out.shape[1]:
            y = y + self.dead_output(mask_pad, batch, time)
        return y
