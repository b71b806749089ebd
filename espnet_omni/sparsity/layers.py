"""Masked drop-in layers: same parameter names, so stock checkpoints load.

``MaskedLinear``, ``MaskedConv1d`` and ``MaskedConv2d`` subclass the torch
layers and keep ``weight`` / ``bias`` as they are: ``state_dict()`` keys
equal the stock module's. Each holds

* ``mask_ranks``: per-element unit ranks (:func:`unit_ranks`), a
  *non-persistent* buffer (not in ``state_dict``; moves with ``.to()``),
  recomputed from the live weights by :meth:`refresh_ranks` only (the trainer
  calls it every ``mask_update_interval`` steps) and after
  ``load_state_dict``;
* ``sparsity``: the active sparsity in ``[0, 1)``.

Forward at sparsity 0 is exactly the stock forward (bitwise); otherwise it
uses ``weight * mask``, so the gradient of a pruned weight is zero for that
sub-network. Float masks are cached per kept-unit count (a float mask multiplies ~10x
faster than a bool one on CPU, measured), up to ``MASK_CACHE_SIZE`` of them
per layer, least recently used dropped first, all dropped when the ranks
change: the sandwich rule switches sub-networks several times a step, and a
search space of a few sparsities per layer then builds each mask once per
mask refresh instead of at every switch.
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from espnet_omni.sparsity.masks import (
    MaskSpec,
    check_sparsity,
    keep_count,
    kept_weights,
    mask_at,
    num_units,
    unit_ranks,
)
from espnet_omni.sparsity.storage import weight_storage_bytes


# Float masks kept per layer (one per recently used sparsity); memory: up to this many
# copies of the layer's weight. 0 disables the cache.
MASK_CACHE_SIZE = 6


class _Masked:
    """Mixin for the masked layers (state and verbs; no ``__init__``)."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    mask_ranks: torch.Tensor

    def _init_masking(self, spec: MaskSpec) -> None:
        self.spec = spec
        self._sparsity = 0.0
        # granularity "group": the float mask set by the layer's StructuredGroup
        # (None: keep all); the layer's own sparsity is then unused
        self.group_mask: torch.Tensor | None = None
        self._mask_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.register_buffer(
            "mask_ranks", unit_ranks(self.weight, spec), persistent=False
        )

    @property
    def sparsity(self) -> float:
        """Active sparsity in ``[0, 1)``; 0 runs the stock forward."""
        return self._sparsity

    @sparsity.setter
    def sparsity(self, value: float) -> None:
        self._sparsity = check_sparsity(value, f"{type(self).__name__}.sparsity")

    @torch.no_grad()
    def refresh_ranks(self) -> None:
        """Re-rank the units from the live weights (one sort); drops the mask cache."""
        self.mask_ranks = unit_ranks(self.weight, self.spec)
        self._mask_cache.clear()

    def bool_mask(self, sparsity: float | None = None) -> torch.Tensor:
        """Bool mask (``weight.shape``) at ``sparsity`` (default: the active one)."""
        if self.spec.unit.tied:
            if sparsity is not None:
                raise ValueError("a group layer's mask is set by its StructuredGroup: "
                                 "ask the group (layer_masks) for another sparsity")
            m = self.group_mask
            return torch.ones_like(self.weight, dtype=torch.bool) if m is None else m != 0
        s = self._sparsity if sparsity is None else sparsity
        return mask_at(self.mask_ranks, self.spec, s)

    def active_mask(self) -> torch.Tensor | None:
        """Float mask at the active sparsity (cached, see the module doc), or None at sparsity 0."""
        if self.spec.unit.tied:
            m, w = self.group_mask, self.weight
            if m is not None and (m.device != w.device or m.dtype != w.dtype):
                m = self.group_mask = m.to(device=w.device, dtype=w.dtype)
            return m
        if self._sparsity == 0.0:
            return None
        w = self.weight
        # keyed by the kept-unit count, not the sparsity: during a ramp the sparsity moves every
        # step while the mask changes only when a unit crosses (refresh_ranks() empties the cache)
        key = (keep_count(self._sparsity, num_units(w.shape, self.spec)), w.device, w.dtype)
        mask = self._mask_cache.get(key)
        if mask is not None:
            self._mask_cache.move_to_end(key)
            return mask
        mask = self.bool_mask().to(device=w.device, dtype=w.dtype)
        if MASK_CACHE_SIZE > 0:
            self._mask_cache[key] = mask
            while len(self._mask_cache) > MASK_CACHE_SIZE:
                self._mask_cache.popitem(last=False)
        return mask

    def masked_weight(self) -> torch.Tensor:
        """``weight * mask`` (the Parameter itself at sparsity 0)."""
        mask = self.active_mask()
        return self.weight if mask is None else self.weight * mask

    def nonzero_params(self) -> int:
        """Weights the active mask keeps, plus the (dense) bias."""
        bias = 0 if self.bias is None else self.bias.numel()
        return kept_weights(self.weight.shape, self.spec, self._sparsity) + bias

    def size_bytes(self, dtype_bytes: int = 4, storage: str = "auto") -> int:
        """Storage of weight (see :mod:`~espnet_omni.sparsity.storage`) + dense bias."""
        bias = 0 if self.bias is None else self.bias.numel() * dtype_bytes
        w = weight_storage_bytes(
            self.weight.shape, self.spec, self._sparsity, dtype_bytes, storage
        )
        return w + bias

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)  # type: ignore[misc]
        self.refresh_ranks()  # ranks of the loaded weights, not the old ones

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, granularity={self.spec.granularity}, sparsity={self._sparsity}"


def _adopt(new: nn.Module, old: nn.Module, spec: MaskSpec) -> nn.Module:
    """Give ``new`` (built on ``meta``) the Parameter objects of ``old``."""
    new.weight = old.weight
    new.bias = old.bias
    new.train(old.training)
    new._init_masking(spec)
    return new


class MaskedLinear(_Masked, nn.Linear):
    """``nn.Linear`` with a nested magnitude mask (weight ``(out, in)``)."""

    def __init__(self, in_features, out_features, bias=True, device=None,
                 dtype=None, *, spec: MaskSpec | None = None) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_masking(spec or MaskSpec())

    @classmethod
    def from_module(cls, m: nn.Linear, spec: MaskSpec) -> "MaskedLinear":
        """Wrap ``m``, sharing its Parameters (no copy)."""
        new = cls(m.in_features, m.out_features, m.bias is not None,
                  device="meta", spec=MaskSpec())
        return _adopt(new, m, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) -> (..., out); bitwise ``nn.Linear`` at sparsity 0."""
        mask = self.active_mask()
        if mask is None:
            return F.linear(x, self.weight, self.bias)
        return F.linear(x, self.weight * mask, self.bias)


def _conv_args(m: nn.modules.conv._ConvNd) -> dict:
    return dict(
        in_channels=m.in_channels, out_channels=m.out_channels,
        kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
        dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
        padding_mode=m.padding_mode,
    )


class _MaskedConv(_Masked):
    """Shared body of the masked convolutions (mixed in before ``nn.ConvNd``)."""

    def __init__(self, *args, spec: MaskSpec | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_masking(spec or MaskSpec())

    @classmethod
    def from_module(cls, m: nn.Module, spec: MaskSpec) -> "_MaskedConv":
        new = cls(**_conv_args(m), device="meta", spec=MaskSpec())
        return _adopt(new, m, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, *spatial) -> (B, C_out, *spatial')."""
        mask = self.active_mask()
        w = self.weight if mask is None else self.weight * mask
        return self._conv_forward(x, w, self.bias)


class MaskedConv1d(_MaskedConv, nn.Conv1d):
    """``nn.Conv1d`` with a nested mask over ``(out, in/groups * k)``.

    Meant for the Conformer pointwise convs (``k = 1``); a depthwise conv
    works too but is excluded by the default patterns.
    """


class MaskedConv2d(_MaskedConv, nn.Conv2d):
    """``nn.Conv2d`` with a nested mask over ``(out, in/groups * kh * kw)``
    (the convolutional subsampling front end)."""


MASKED_LAYERS = (MaskedLinear, MaskedConv1d, MaskedConv2d)
_WRAPPERS: tuple[tuple[type, type], ...] = (
    (nn.Linear, MaskedLinear),
    (nn.Conv1d, MaskedConv1d),
    (nn.Conv2d, MaskedConv2d),
)


def _wrapper_for(m: nn.Module) -> type | None:
    if isinstance(m, MASKED_LAYERS):
        return None
    for base, wrapper in _WRAPPERS:
        if type(m) is base:  # exact type: a subclass may change forward
            return wrapper
    return None


def convert_to_masked(
    module: nn.Module,
    spec: MaskSpec,
    include: Sequence[str],
    exclude: Sequence[str] = (),
) -> list[str]:
    """Swap matching Linear/Conv1d/Conv2d submodules for masked ones, in place.

    Names are matched with :func:`fnmatch.fnmatchcase` (``*`` also crosses
    dots), e.g. ``"encoders.*.self_attn.linear_q"``. The new modules share the
    old Parameter tensors. Every ``include`` pattern must match at least one
    convertible layer (a typo raises, listing the candidates); ``exclude``
    wins over ``include``. A shape the spec cannot tile raises naming the
    layer. Already-masked layers are kept and reported.

    Returns:
        The prunable (masked) layer names, in ``named_modules`` order.
    """
    candidates = {
        name: m for name, m in module.named_modules()
        if name and (_wrapper_for(m) is not None or isinstance(m, MASKED_LAYERS))
    }
    for pat in include:
        if not any(fnmatch.fnmatchcase(n, pat) for n in candidates):
            raise ValueError(
                f"prunable pattern {pat!r} matches no Linear/Conv1d/Conv2d layer; "
                f"candidates: {sorted(candidates)}"
            )
    names = [
        n for n in candidates
        if any(fnmatch.fnmatchcase(n, p) for p in include)
        and not any(fnmatch.fnmatchcase(n, p) for p in exclude)
    ]
    for name in names:
        old = candidates[name]
        wrapper = _wrapper_for(old)
        if wrapper is None:
            continue
        parent_name, _, leaf = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        try:
            new = wrapper.from_module(old, spec)
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from None
        setattr(parent, leaf, new)
    return names
