"""Conformer convolution module with a causal (streaming) mode.

``DualModeConvolutionModule`` is ESPnet's ``ConvolutionModule`` (same
children, same parameter names) plus a ``causal`` flag:

* ``causal=False``: ESPnet's forward, untouched (bitwise);
* ``causal=True``: the depthwise kernel times
  :func:`~espnet_omni.nets.chunk_config.causal_conv_kernel_mask`, so output
  ``t`` reads GLU outputs ``t - P .. t`` (``P = (K - 1) // 2``); chunk by
  chunk the same is computed by :class:`~espnet_omni.nets.chunk_step.BlockStep`
  from a cache of the last ``P`` GLU outputs.

The depthwise conv may itself be a masked (prunable) layer: its masked
weight is used in both modes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from espnet2.legacy.nets.pytorch_backend.conformer.convolution import (
    ConvolutionModule,
    mask_padded_frames,
)
from espnet_omni.nets.chunk_config import causal_conv_kernel_mask
from espnet_omni.sparsity.layers import MASKED_LAYERS


class DualModeConvolutionModule(ConvolutionModule):
    """``ConvolutionModule`` whose depthwise conv can run causally."""

    causal: bool = False

    @classmethod
    def from_module(cls, m: ConvolutionModule) -> "DualModeConvolutionModule":
        """Wrap ``m``, sharing its children (no parameter copy, no RNG use)."""
        with torch.device("meta"):
            new = cls(
                m.depthwise_conv.in_channels,
                m.depthwise_conv.kernel_size[0],
                bias=m.depthwise_conv.bias is not None,
            )
        for name, child in m.named_children():
            setattr(new, name, child)
        new.activation = m.activation  # a plain callable is not a child
        new.train(m.training)
        return new

    @property
    def context(self) -> int:
        """``P``: past GLU frames the causal depthwise conv reads."""
        return (self.depthwise_conv.kernel_size[0] - 1) // 2

    def _depthwise_weight(self) -> torch.Tensor:
        """Depthwise kernel ``(C, 1, K)``, masked if the layer is prunable."""
        dw = self.depthwise_conv
        return dw.masked_weight() if isinstance(dw, MASKED_LAYERS) else dw.weight

    def causal_weight(self) -> torch.Tensor:
        """Depthwise kernel ``(C, 1, K)`` with its future taps zeroed."""
        w = self._depthwise_weight()
        return w * causal_conv_kernel_mask(w.size(-1)).to(w)

    def forward(self, x: torch.Tensor, mask_pad: torch.Tensor | None = None):
        """(B, T, C) -> (B, T, C).

        ``mask_pad``: ``(B, 1, T)`` real-frame mask, or in causal mode also the
        ``(B, T, T)`` streaming attention mask, whose diagonal is the
        real-frame mask (see ``streaming_attention_mask``).
        """
        if not self.causal:
            return super().forward(x, mask_pad)
        if mask_pad is not None and mask_pad.dim() == 3 and mask_pad.size(1) > 1:
            mask_pad = mask_pad.diagonal(dim1=1, dim2=2).unsqueeze(1)  # (B, 1, T)
        x = self._glu(x.transpose(1, 2))  # (B, C, T)
        x = mask_padded_frames(x, mask_pad)
        dw = self.depthwise_conv
        x = F.conv1d(x, self.causal_weight(), dw.bias, dw.stride, dw.padding,
                     dw.dilation, dw.groups)  # (B, C, T)
        return self._tail(x).transpose(1, 2)

    def _glu(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T): pointwise conv 1 and GLU."""
        return F.glu(self.pointwise_conv1(x), dim=1)

    def _tail(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T): norm, activation, pointwise conv 2."""
        return self.pointwise_conv2(self.activation(self.norm(x)))


def enable_dual_mode_conv(encoders: nn.Module) -> list[DualModeConvolutionModule]:
    """Swap every ``encoders.*.conv_module`` for a dual-mode one, in place.

    Returns the new modules (empty without a conv module). Parameter names
    and values are unchanged; ``EncoderLayer`` keeps passing its mask.
    """
    out = []
    for layer in encoders:
        if isinstance(layer.conv_module, ConvolutionModule):
            if not isinstance(layer.conv_module, DualModeConvolutionModule):
                layer.conv_module = DualModeConvolutionModule.from_module(
                    layer.conv_module
                )
            out.append(layer.conv_module)
    return out
