"""Omni-sparsity Conformer encoder: ESPnet's ConformerEncoder as a supernet.

The encoder is built exactly as ``ConformerEncoder`` builds it, then the
prunable layers are swapped in place for masked ones that keep the same
parameter names (see :mod:`espnet_omni.sparsity.layers`): a stock
``ConformerEncoder`` state dict loads with ``strict=True`` and, with every
sparsity at 0, the output is bitwise the stock one.

Supernet verbs (once-for-all vocabulary): :meth:`prunable_layers`,
:meth:`set_active_subnet`, :meth:`sample_active_subnet`, :meth:`set_max_net`,
:meth:`set_min_net`, :meth:`get_active_subnet`, :meth:`refresh_masks`,
:meth:`active_nonzero_params`, :meth:`active_size_bytes`.

Dual-mode verbs (one set of shared weights, README "Dual mode"): :meth:`set_active_mode`
(``"full"``: ESPnet's forward, bitwise; ``"streaming"``: chunked
self-attention and causal depthwise convs, see
:mod:`espnet_omni.nets.chunk_config`), :meth:`get_active_mode`. Mode and
sub-network are independent: the trainer sets both per micro-step.

Mask ranks follow the weights only when :meth:`refresh_masks` runs (the
trainer calls it at step 0 and every ``mask_update_interval`` steps; loading a
state dict refreshes automatically). Re-initialising the weights after
construction without a refresh leaves ranks of the old weights.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import random
from typing import List, NamedTuple, Optional, Sequence, Union

import torch
from typeguard import typechecked

from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.legacy.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet2.legacy.nets.pytorch_backend.transformer.subsampling import (
    Conv2dSubsampling,
    Conv2dSubsampling1,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
    TooShortUttError,
    check_short_utt,
)
from espnet_omni.nets.dual_mode_conv import enable_dual_mode_conv
from espnet_omni.nets.chunk_config import (
    StreamingConfig,
    chunk_attention_mask,
    streaming_attention_mask,
)
from espnet_omni.nets.conformer_units import conformer_unit_sets
from espnet_omni.sparsity.groups import attach_groups, member_names, owned_parameters
from espnet_omni.sparsity.layers import convert_to_masked
from espnet_omni.sparsity.masks import MaskSpec
from espnet_omni.sparsity.subnet import (
    DEFAULT_CHOICES,
    SearchSpace,
    SubnetConfig,
    sample,
    sparsest,
)

# Encoder blocks: attention q/k/v/out, both feed-forwards (Linear, or Conv1d
# for the conv1d positionwise types), the conv module's pointwise convs. The
# depthwise conv (kernel 31, groups = channels) and linear_pos stay dense:
# few weights, and the depthwise kernel does not tile into 1x4 / 4-groups.
BLOCK_PATTERNS = (
    "encoders.*.self_attn.linear_q",
    "encoders.*.self_attn.linear_k",
    "encoders.*.self_attn.linear_v",
    "encoders.*.self_attn.linear_out",
    "encoders.*.feed_forward.w_[12]",
    "encoders.*.feed_forward_macaron.w_[12]",
    "encoders.*.conv_module.pointwise_conv[12]",
)
# Front end (the largest share of CPU time in a small model): every
# subsampling conv but the first (1 input channel: its 9-weight rows neither
# tile nor cost much, ~1/odim of the second conv's MACs) and the output
# Linear; ``embed.0`` is the Linear of input_layer="linear".
FRONTEND_PATTERNS = ("embed.conv.[1-9]*", "embed.out", "embed.0")


def _matching(module: torch.nn.Module, patterns: Sequence[str]) -> list[str]:
    """The patterns that match at least one Linear/Conv submodule name."""
    names = [
        n for n, m in module.named_modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))
    ]
    return [p for p in patterns if any(fnmatch.fnmatchcase(n, p) for n in names)]


MODES = ("full", "streaming")
# the front ends that take and subsample the mask (as in ESPnet's forward)
CONV_SUBSAMPLING = (
    Conv2dSubsampling,
    Conv2dSubsampling1,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
)


class EncoderMode(NamedTuple):
    """The active mode: ``name`` in :data:`MODES`; ``streaming`` is the chunk
    config in streaming mode, ``None`` in full mode."""

    name: str
    streaming: Optional[StreamingConfig]


class OmniConformerEncoder(ConformerEncoder):
    """ConformerEncoder whose Linear / pointwise-conv weights carry nested masks.

    Args (beyond ``ConformerEncoder``'s, which keep their meaning and defaults):
        mask_granularity: ``unstructured`` | ``block`` | ``nm`` | ``row`` |
            ``group`` (tied structured groups: attention heads, FFN units,
            conv-module channels, front-end channels; the prunable names are
            then group names, see :mod:`~espnet_omni.sparsity.groups`).
        mask_block: ``(bh, bw)`` tile for ``block``.
        mask_n, mask_m: the ``N:M`` pattern for ``nm`` (masks group ``m``
            inputs; ``n`` is the deployment target, see ``MaskSpec``).
        prune_frontend: also prune the subsampling convs (not the first) and
            its output Linear. Off by default: the papers prune the blocks.
        prunable: module-name patterns (fnmatch, ``*`` crosses dots) to prune
            instead of the defaults; each must match a layer.
        prune_exclude: patterns removed from the prunable set.
        streaming: the default :class:`StreamingConfig` of the streaming mode
            (keys ``chunk_size``, ``left_chunks``, ``lookahead``,
            ``lookahead_layers``; default ``{chunk_size: 16, left_chunks: -1,
            lookahead: 0}``). The encoder starts in full mode either way.

    Streaming mode keeps the ``conv2d`` subsampling front end as it is: it is
    a fixed finite-context function (encoder frame ``i`` reads feature
    frames ``4i .. 4i+6``), so chunked inference reproduces it exactly by
    waiting for 3 more feature frames (30 ms) plus half an STFT window; see
    :func:`~espnet_omni.nets.chunk_config.algorithmic_latency`.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: Optional[str] = "conv2d",
        normalize_before: bool = True,
        concat_after: bool = False,
        positionwise_layer_type: str = "linear",
        positionwise_conv_kernel_size: int = 3,
        macaron_style: bool = False,
        rel_pos_type: str = "legacy",
        pos_enc_layer_type: str = "rel_pos",
        selfattention_layer_type: str = "rel_selfattn",
        activation_type: str = "swish",
        use_cnn_module: bool = True,
        zero_triu: bool = False,
        cnn_module_kernel: int = 31,
        padding_idx: int = -1,
        interctc_layer_idx: List[int] = [],
        interctc_use_conditioning: bool = False,
        ctc_trim: bool = False,
        stochastic_depth_rate: Union[float, List[float]] = 0.0,
        layer_drop_rate: float = 0.0,
        max_pos_emb_len: int = 5000,
        qk_norm: bool = False,
        use_flash_attn: bool = True,
        use_sdpa: bool = False,
        # --- supernet options ---
        mask_granularity: str = "unstructured",
        mask_block: Sequence[int] = (1, 4),
        mask_n: int = 2,
        mask_m: int = 4,
        prune_frontend: bool = False,
        prunable: Optional[List[str]] = None,
        prune_exclude: Optional[List[str]] = None,
        # --- dual-mode option ---
        streaming: Optional[dict] = None,
    ):
        super().__init__(
            input_size=input_size,
            output_size=output_size,
            attention_heads=attention_heads,
            linear_units=linear_units,
            num_blocks=num_blocks,
            dropout_rate=dropout_rate,
            positional_dropout_rate=positional_dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            input_layer=input_layer,
            normalize_before=normalize_before,
            concat_after=concat_after,
            positionwise_layer_type=positionwise_layer_type,
            positionwise_conv_kernel_size=positionwise_conv_kernel_size,
            macaron_style=macaron_style,
            rel_pos_type=rel_pos_type,
            pos_enc_layer_type=pos_enc_layer_type,
            selfattention_layer_type=selfattention_layer_type,
            activation_type=activation_type,
            use_cnn_module=use_cnn_module,
            zero_triu=zero_triu,
            cnn_module_kernel=cnn_module_kernel,
            padding_idx=padding_idx,
            interctc_layer_idx=interctc_layer_idx,
            interctc_use_conditioning=interctc_use_conditioning,
            ctc_trim=ctc_trim,
            stochastic_depth_rate=stochastic_depth_rate,
            layer_drop_rate=layer_drop_rate,
            max_pos_emb_len=max_pos_emb_len,
            qk_norm=qk_norm,
            use_flash_attn=use_flash_attn,
            use_sdpa=use_sdpa,
        )
        self.mask_spec = MaskSpec(
            mask_granularity, tuple(mask_block), n=mask_n, m=mask_m
        )
        self._groups: dict = {}
        if self.mask_spec.unit.tied:
            self._prunable = self._build_groups(prune_frontend, prunable, prune_exclude)
        else:
            self._prunable = self._build_masked(input_layer, prune_frontend, prunable, prune_exclude)
        self._finish_init(streaming)

    def _build_masked(self, input_layer: Optional[str], prune_frontend: bool,
                      prunable: Optional[List[str]], prune_exclude: Optional[List[str]]) -> list:
        """Swap the prunable layers (untied granularities) for masked ones; their names."""
        if prunable is None:
            patterns = _matching(self, BLOCK_PATTERNS)  # absent modules are fine
        else:
            patterns = list(prunable)  # user patterns: each must match
        if prune_frontend:
            front = _matching(self, FRONTEND_PATTERNS)
            if not front:
                raise ValueError(
                    f"prune_frontend=True but input_layer={input_layer!r} has no "
                    f"prunable layer matching {FRONTEND_PATTERNS}"
                )
            patterns += front
        names = convert_to_masked(
            self, self.mask_spec, include=patterns, exclude=prune_exclude or ()
        )
        if not names:
            raise ValueError("OmniConformerEncoder has no prunable layer")
        return names

    def _finish_init(self, streaming: Optional[dict]) -> None:
        self.streaming_config = StreamingConfig.from_dict(streaming)
        self._dual_convs = None  # swapped in by dual_mode_convs()
        self._flash = [layer.self_attn.use_flash_attn for layer in self.encoders]
        self._mode = EncoderMode("full", None)

    def _build_groups(self, frontend: bool, prunable: Optional[List[str]],
                      exclude: Optional[List[str]]) -> list[str]:
        """``mask_granularity: group``: mask every member layer of the
        structured groups (:mod:`~espnet_omni.sparsity.groups`) and attach the
        groups; ``prunable`` / ``prune_exclude`` select groups by name."""
        sets = conformer_unit_sets(self, frontend)
        names = list(sets)
        if prunable is not None:
            for pat in prunable:
                if not any(fnmatch.fnmatchcase(n, pat) for n in names):
                    raise ValueError(
                        f"prunable pattern {pat!r} matches no structured group; with "
                        f"mask_granularity 'group' the prunable names are groups: {names}")
            names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in prunable)]
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exclude or ())]
        if not names:
            raise ValueError("OmniConformerEncoder has no prunable group")
        sets = {n: sets[n] for n in names}
        convert_to_masked(self, self.mask_spec, include=member_names(u for v in sets.values() for u in v))
        self._groups = attach_groups(self, sets)
        # ranks follow the loaded weights (the layers re-rank themselves on load)
        self.register_load_state_dict_post_hook(lambda module, _: module.refresh_masks())
        return names

    def group(self, name: str):
        """The :class:`~espnet_omni.sparsity.groups.StructuredGroup` ``name``
        (None when it is not prunable or the granularity is not ``group``)."""
        return self._groups.get(name)

    def masked_layer_names(self) -> list[str]:
        """Names of the masked Linear / Conv layers (the prunable layers, or
        the member layers of the structured groups)."""
        if self._groups:
            return member_names(us for g in self._groups.values() for us in g.unit_sets)
        return list(self._prunable)

    # --------------------------------------------------------- dual-mode verbs
    def set_active_mode(
        self, mode: str, cfg: Optional[StreamingConfig] = None
    ) -> EncoderMode:
        """Select ``"full"`` or ``"streaming"`` (with ``cfg``, default the
        constructor's ``streaming`` config); returns the active mode.
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: must be one of {MODES}")
        if mode == "full":
            if cfg is not None:
                raise ValueError("a StreamingConfig is meaningless in full mode")
            self._mode = EncoderMode("full", None)
        else:
            if self.interctc_layer_idx:
                raise NotImplementedError(
                    "streaming mode does not support interctc_layer_idx "
                    f"{self.interctc_layer_idx}"
                )
            cfg = self.streaming_config if cfg is None else cfg
            if not isinstance(cfg, StreamingConfig):
                raise TypeError(f"cfg must be a StreamingConfig, got {type(cfg)}")
            self._mode = EncoderMode("streaming", cfg)
        streaming = mode == "streaming"
        convs = self.dual_mode_convs() if streaming else (self._dual_convs or [])
        for conv in convs:
            conv.causal = streaming
        for layer, flash in zip(self.encoders, self._flash):
            # flash_attn reads only the last mask row: no chunk masks there
            layer.self_attn.use_flash_attn = flash and not streaming
        return self._mode

    def dual_mode_convs(self) -> list:
        """The blocks' conv modules as ``DualModeConvolutionModule`` s.

        Swapped in on first use (same children and parameters, stock forward
        while not causal), so an encoder never put in streaming mode keeps
        ESPnet's ``ConvolutionModule`` type (the ``row`` exporter checks it).
        """
        if self._dual_convs is None:
            self._dual_convs = enable_dual_mode_conv(self.encoders)
        return self._dual_convs

    def get_active_mode(self) -> EncoderMode:
        """The active mode and, in streaming mode, its chunk config."""
        return self._mode

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: torch.Tensor = None,
        masks: torch.Tensor = None,
        ctc=None,
        return_all_hs: bool = False,
    ):
        """ESPnet's forward in full mode; the simulated streaming forward
        (chunk masks, causal convs) in streaming mode.

        Args:
            xs_pad: ``(B, T, D_in)`` features; ilens: ``(B,)``.
            masks: optional ``(B, T)`` padding mask (``True`` = padded).

        Returns:
            ``(B, T', D)`` output, ``(B,)`` output lengths, ``None``.
        """
        if self._mode.name == "full":
            return super().forward(
                xs_pad, ilens, prev_states, masks, ctc, return_all_hs
            )
        if masks is None:
            masks = (~make_pad_mask(ilens)[:, None, :]).to(xs_pad.device)
        else:
            masks = ~masks[:, None, :]  # (B, 1, T)
        if isinstance(self.embed, CONV_SUBSAMPLING):
            short, limit = check_short_utt(self.embed, xs_pad.size(1))
            if short:
                raise TooShortUttError(
                    f"has {xs_pad.size(1)} frames and is too short for "
                    f"subsampling (it needs more than {limit} frames)",
                    xs_pad.size(1),
                    limit,
                )
            xs, masks = self.embed(xs_pad, masks)  # masks: (B, 1, T')
        else:
            xs = self.embed(xs_pad)
        x = xs[0] if isinstance(xs, tuple) else xs  # (B, T', D)
        all_hs = []
        chunk_masks = {}
        for layer_idx, layer in enumerate(self.encoders):
            ahead = self._mode.streaming.layer_lookahead(layer_idx)
            if ahead not in chunk_masks:
                cfg = dataclasses.replace(self._mode.streaming, lookahead=ahead)
                chunk = chunk_attention_mask(x.size(1), cfg, x.device)  # (T', T')
                chunk_masks[ahead] = streaming_attention_mask(chunk, masks)
            xs, _ = layer(xs, chunk_masks[ahead])  # (B, T', D) or (x, pos_emb)
            if return_all_hs:
                all_hs.append(xs[0] if isinstance(xs, tuple) else xs)
        x = xs[0] if isinstance(xs, tuple) else xs
        if self.normalize_before:
            x = self.after_norm(x)
        olens = masks.squeeze(1).sum(1)
        if all_hs:
            return (x, all_hs), olens, None
        return x, olens, None

    # ----------------------------------------------------------- supernet verbs
    def prunable_layers(self) -> list[str]:
        """Names of the masked layers (the keys of a SubnetConfig)."""
        return list(self._prunable)

    def _masked(self) -> dict[str, torch.nn.Module]:
        return {name: self.get_submodule(name) for name in self._prunable}

    def set_active_subnet(self, cfg: SubnetConfig) -> None:
        """Activate per-layer sparsities; raises if ``cfg`` is for another
        architecture (layer names) or another mask spec."""
        cfg.check_layers(self._prunable)
        if cfg.spec != self.mask_spec:
            raise ValueError(
                f"SubnetConfig spec {cfg.spec} does not match the encoder's "
                f"mask spec {self.mask_spec}"
            )
        for name, layer in self._masked().items():
            layer.sparsity = cfg.sparsities[name]

    def get_active_subnet(self) -> SubnetConfig:
        """The active per-layer sparsities."""
        return SubnetConfig(
            {n: m.sparsity for n, m in self._masked().items()}, self.mask_spec
        )

    def sample_active_subnet(
        self, space: SearchSpace, rng: random.Random | torch.Generator
    ) -> SubnetConfig:
        """Draw a sub-network from ``space`` with ``rng``, activate it, return it."""
        cfg = sample(space, rng)
        self.set_active_subnet(cfg)
        return cfg

    def set_max_net(self) -> None:
        """The dense network (every sparsity 0)."""
        for layer in self._masked().values():
            layer.sparsity = 0.0

    def set_min_net(self, space: SearchSpace) -> None:
        """The sparsest sub-network of ``space``."""
        self.set_active_subnet(sparsest(space))

    def search_space(
        self, choices: Sequence[float] = DEFAULT_CHOICES, tie: str = "per_layer"
    ) -> SearchSpace:
        """A SearchSpace over this encoder's prunable layers."""
        return SearchSpace(
            tuple(self._prunable), tuple(choices), tie=tie, spec=self.mask_spec
        )

    def refresh_masks(self) -> None:
        """Re-rank every prunable layer from its live weights (one sort each)."""
        for layer in self._masked().values():
            layer.refresh_ranks()

    def active_nonzero_params(self) -> int:
        """Parameters of the active sub-network: masked layers' kept weights and
        biases, plus every other parameter (dense)."""
        masked = self._masked().values()
        inside = {id(p) for m in masked for p in owned_parameters(m)}
        rest = sum(p.numel() for p in self.parameters() if id(p) not in inside)
        return rest + sum(m.nonzero_params() for m in masked)

    def active_size_bytes(self, dtype_bytes: int = 4, storage: str = "auto") -> int:
        """Bytes of the active sub-network's parameters: masked layers in
        ``storage`` format, everything else dense (buffers not counted)."""
        masked = self._masked().values()
        inside = {id(p) for m in masked for p in owned_parameters(m)}
        rest = sum(p.numel() for p in self.parameters() if id(p) not in inside)
        return rest * dtype_bytes + sum(
            m.size_bytes(dtype_bytes, storage) for m in masked
        )



class NotASupernetError(TypeError, ValueError):
    """A model whose encoder is not an :class:`OmniConformerEncoder` was given
    where sub-networks are needed (search, export, evaluation). Both a
    ``TypeError`` (wrong encoder type) and a ``ValueError`` (wrong config)."""


def supernet_encoder(
    model: torch.nn.Module, purpose: str = "", *, required: bool = True
) -> Optional[OmniConformerEncoder]:
    """The supernet encoder of ``model``: ``model.encoder`` (``model.module.encoder``
    under DDP) if it is an :class:`OmniConformerEncoder`.

    Not a supernet: ``required=True`` raises :class:`NotASupernetError`, its
    message starting with ``purpose`` (the caller, e.g. ``"export"``);
    ``required=False`` returns None (plain training).
    """
    core = getattr(model, "module", model)  # DDP wraps the model
    encoder = getattr(core, "encoder", None)
    if isinstance(encoder, OmniConformerEncoder):
        return encoder
    if not required:
        return None
    raise NotASupernetError(
        f"{purpose or 'supernet'}: the encoder is {type(encoder).__name__}, not a supernet: it "
        "needs an ASR model whose encoder is OmniConformerEncoder ('encoder: omni_conformer')"
    )
