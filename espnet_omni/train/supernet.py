"""Supernet training: several sub-networks per optimizer step.

ESPnet's ``Trainer.train_one_epoch`` already accumulates gradients over
``accum_grad`` mini-batches before one optimizer step. A supernet step is
that loop seen from the other side: each mini-batch is replayed K times, once
per sub-network, and ``accum_grad`` is multiplied by K. So ESPnet's own loop
(gradient clipping, AMP, schedulers, DDP, reporter, TensorBoard) runs
unchanged, and the loss of each sub-network is scaled by ``1 / (K *
accum_grad)``: the step's gradient is the mean of the sub-networks'.

Pieces:
- :class:`SupernetConfig` — the ``--omni_conf`` YAML, typed and validated;
- :class:`SupernetState` — step counting, masks refresh, sampling; all
  derived from ESPnet's reporter count, so a resumed run continues the same
  sequence of masks and sub-networks;
- :func:`replay` — the iterator that activates sub-network k before handing
  out the k-th copy of a mini-batch;
- :class:`TaggedModel` — wraps the ASR model: renames the reported stats per
  sub-network (``loss_max``, ``loss_min``, ``loss_rand0`` ...) and adds the
  in-place distillation loss (the densest sub-network's detached CTC
  posteriors teach the others).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

import torch
import torch.nn.functional as F

from espnet_omni.nets.transducer import is_transducer
from espnet_omni.sparsity.masks import check_sparsity
from espnet_omni.sparsity.schedule import CubicSchedule
from espnet_omni.sparsity.subnet import DEFAULT_CHOICES, TIES, SearchSpace, SubnetConfig
from espnet_omni.sparsity.yaml_io import check_keys
from espnet_omni.train.samplers import SamplerConfig, plan_step, uniform_subnets


@dataclass
class DualModeConfig:
    """Dual mode (README "Dual mode"): every step trains the dense full-context
    network and a sparse streaming sub-network of the same weights.

    Attributes:
        full_weight: Loss weight of the dense full-context micro-step; 0
            drops that micro-step (and its validation): a streaming model
            trained alone, e.g. Table B's individually pruned streaming row.
        streaming_weight: Loss weight of each sparse streaming micro-step.
        streaming_sparsity: Uniform sparsity of the streaming model; None =
            the streaming sub-networks come from the sampler (omni + dual).
        chunk_sizes: Dynamic chunk training: one chunk size (frames after
            subsampling) drawn per step; empty = the encoder's own
            streaming config every step.
    """

    full_weight: float = 1.0
    streaming_weight: float = 1.0
    streaming_sparsity: Optional[float] = 0.7
    chunk_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for key in ("full_weight", "streaming_weight"):
            if not 0.0 <= getattr(self, key) <= 10.0:
                raise ValueError(f"omni_conf.dual_mode.{key}={getattr(self, key)} is outside [0, 10]")
        if self.streaming_sparsity is not None:
            check_sparsity(self.streaming_sparsity, "omni_conf.dual_mode.streaming_sparsity")
        self.chunk_sizes = tuple(self.chunk_sizes)
        bad = [c for c in self.chunk_sizes if not isinstance(c, int) or c <= 0]
        if bad:
            raise ValueError(f"omni_conf.dual_mode.chunk_sizes has {bad}: chunk sizes are frames > 0")


@dataclass
class MicroStep:
    """One forward/backward of a supernet step."""

    tag: str  # names the reported stats: loss_<tag>
    subnet: SubnetConfig
    mode: Optional[str] = None  # None (single-mode encoder) | "full" | "streaming"
    chunk_size: Optional[int] = None  # streaming chunk (dynamic chunk training)
    weight: float = 1.0


@dataclass
class SupernetConfig:
    """What ``--omni_conf`` holds (an empty mapping = plain ESPnet training).

    Attributes:
        sampler: :class:`SamplerConfig` mapping (rule, num_subnets, fixed).
        choices: Sparsities a layer may take when sampling.
        tie: How layers share a sparsity: ``global``, ``per_block`` or
            ``per_layer``.
        distill_weight: Weight of the in-place distillation loss (KL from the
            densest sub-network's posteriors, detached) added to every
            other sub-network's loss; 0 switches it off.
        distill_head: Whose posteriors: ``ctc`` (the CTC head's, per frame)
            or ``transducer`` (a transducer model's joint network, per frame
            and label position: the papers' RNN-T distillation).
        mask_update_interval: Optimizer steps between mask refreshes (the
            masks are re-ranked from the live weights; one sort per layer).
        schedule: Optional :class:`CubicSchedule` mapping: caps the sampled
            sparsities (and the ``fixed`` ones) by a cubic ramp, e.g. for
            gradual magnitude pruning.
        valid_sparsities: Uniform sparsities validated every epoch; the
            generic ``loss``/``cer_ctc`` keys are their mean, and each is also
            reported as ``<key>_s<percent>``.
        seed: Seed of the sub-network sampling (combined with the step).
        dual_mode: Optional :class:`DualModeConfig` mapping.
        split_batch: Give each of the K sub-networks of a step its own
            1/K of the mini-batch (contiguous rows, each trimmed to its own
            longest utterance) instead of the whole mini-batch: what K
            data-parallel workers each running their own sub-network do
            (the papers' multi-GPU setting). A step then costs about one
            dense pass over the mini-batch instead of K, so at equal compute
            the supernet takes K times more optimizer steps. A mini-batch
            with fewer than K utterances goes whole to every sub-network.
            In-place distillation needs the teacher's posteriors on the same
            utterances, so it is not available with ``split_batch``.
    """

    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    choices: tuple[float, ...] = DEFAULT_CHOICES
    tie: str = "per_layer"
    distill_weight: float = 0.0
    distill_head: str = "ctc"
    mask_update_interval: int = 50
    schedule: Optional[CubicSchedule] = None
    valid_sparsities: tuple[float, ...] = (0.0, 0.5, 0.7, 0.9)
    seed: int = 0
    dual_mode: Optional[DualModeConfig] = None
    split_batch: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.dual_mode, dict):
            check_keys(self.dual_mode, list(DualModeConfig.__dataclass_fields__), "omni_conf.dual_mode")
            self.dual_mode = DualModeConfig(**self.dual_mode)
        if isinstance(self.sampler, dict):
            self.sampler = SamplerConfig.from_dict(self.sampler)
        if isinstance(self.schedule, dict):
            self.schedule = CubicSchedule(**self.schedule)
        if self.tie not in TIES:
            raise ValueError(f"omni_conf.tie={self.tie!r} is not one of {TIES}")
        if not 0.0 <= self.distill_weight <= 10.0:
            raise ValueError(f"omni_conf.distill_weight={self.distill_weight} is outside [0, 10]")
        if self.mask_update_interval < 1:
            raise ValueError(f"omni_conf.mask_update_interval={self.mask_update_interval} must be >= 1")
        self.choices = tuple(check_sparsity(v, f"omni_conf.choices[{i}]") for i, v in enumerate(self.choices))
        self.valid_sparsities = tuple(
            check_sparsity(v, f"omni_conf.valid_sparsities[{i}]") for i, v in enumerate(self.valid_sparsities)
        )
        if not self.valid_sparsities:
            raise ValueError("omni_conf.valid_sparsities must not be empty")
        if not isinstance(self.split_batch, bool):
            raise ValueError(f"omni_conf.split_batch={self.split_batch!r} must be true or false")
        if self.distill_head not in ("ctc", "transducer"):
            raise ValueError(f"omni_conf.distill_head={self.distill_head!r}: expected ctc or transducer")
        if self.split_batch and self.distill_weight > 0:
            raise ValueError(
                f"omni_conf.split_batch: true and distill_weight={self.distill_weight}: in-place distillation "
                "needs every sub-network on the teacher's utterances; set distill_weight: 0 or split_batch: false"
            )

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> Optional["SupernetConfig"]:
        """None for an empty/absent ``--omni_conf`` (plain training)."""
        if not d:
            return None
        check_keys(d, [f for f in cls.__dataclass_fields__], "omni_conf")
        return cls(**d)


class SupernetState:
    """Per-run supernet bookkeeping, derived from the optimizer step count."""

    def __init__(self, cfg: SupernetConfig, encoder, accum_grad: int):
        self.cfg = cfg
        self.encoder = encoder
        self.accum_grad = accum_grad
        self.space = SearchSpace(tuple(encoder.prunable_layers()), cfg.choices, tie=cfg.tie, spec=encoder.mask_spec)
        self.micro = MicroStep("max", SubnetConfig.uniform(self.space.layers, 0.0, self.space.spec))
        self.teacher: Optional[torch.Tensor] = None  # (B, T, V) detached log-probs

    def max_sparsity(self, step: int) -> float:
        return self.cfg.schedule.sparsity_at(step) if self.cfg.schedule else 1.0

    @property
    def k(self) -> int:
        """Micro-steps per optimizer step."""
        dual = self.cfg.dual_mode
        if dual is None:
            return self.cfg.sampler.k
        full = 1 if dual.full_weight > 0 else 0
        return full + (1 if dual.streaming_sparsity is not None else self.cfg.sampler.k)

    def plan(self, step: int) -> list[MicroStep]:
        """Micro-steps of optimizer step ``step`` (deterministic in seed and step).

        The first one is the teacher of in-place distillation: the densest
        sub-network, or in dual mode the dense full-context network.
        """
        cap = self.max_sparsity(step)
        space = self.space.capped(cap) if self.cfg.schedule else self.space
        rng = random.Random(self.cfg.seed * 1_000_003 + step)
        plan = plan_step(space, self.cfg.sampler, rng)
        if self.cfg.schedule:  # fixed targets ramp up too (gradual pruning)
            plan = [(t, SubnetConfig({k: min(v, cap) for k, v in c.sparsities.items()}, c.spec)) for t, c in plan]
        dual = self.cfg.dual_mode
        if dual is None:
            return [MicroStep(t, c) for t, c in plan]
        chunk = dual.chunk_sizes[rng.randrange(len(dual.chunk_sizes))] if dual.chunk_sizes else None
        if dual.streaming_sparsity is not None:
            s_stream = min(dual.streaming_sparsity, cap) if self.cfg.schedule else dual.streaming_sparsity
            plan = [("stream", SubnetConfig.uniform(space.layers, s_stream, space.spec))]
        else:
            plan = [(f"stream_{t}", c) for t, c in plan]
        dense = SubnetConfig.uniform(space.layers, 0.0, space.spec)
        full = [MicroStep("full", dense, "full", None, dual.full_weight)] if dual.full_weight > 0 else []
        return full + [MicroStep(t, c, "streaming", chunk, dual.streaming_weight) for t, c in plan]


def replay(iterator: Iterable, state: SupernetState, first_micro_step: int) -> Iterator:
    """Yield every mini-batch K times, activating sub-network k before copy k.

    ``first_micro_step`` is ESPnet's reporter count at the start of the epoch
    (mini-batches seen so far, each K-replayed), so the optimizer step number
    and therefore the schedule, the mask refreshes and the sampled
    sub-networks continue across epochs and resumes.
    """
    k = state.k
    micro = first_micro_step
    for utt_id, batch in iterator:
        step = micro // (k * state.accum_grad)
        if micro % (k * state.accum_grad) == 0 and step % state.cfg.mask_update_interval == 0:
            state.encoder.refresh_masks()
        plan = state.plan(step)
        parts = split_batch(utt_id, batch, len(plan)) if state.cfg.split_batch else [(utt_id, batch)] * len(plan)
        for ms, part in zip(plan, parts):
            activate(state.encoder, ms)
            state.micro = ms
            yield part
            micro += 1
    reset(state.encoder)


def split_batch(utt_id: list, batch: dict, k: int) -> list[tuple[list, dict]]:
    """K contiguous slices of an ESPnet mini-batch (``omni_conf.split_batch``).

    Every tensor whose first dimension is the batch is sliced by rows; a
    padded tensor ``x`` with an ``x_lengths`` entry is also cut to the
    slice's longest row (ESPnet sorts a mini-batch by length, so slices
    carry little padding). Fewer than K utterances: the whole mini-batch,
    K times.

    >>> b = {"speech": torch.zeros(5, 9), "speech_lengths": torch.tensor([9, 8, 6, 3, 2])}
    >>> [(u, tuple(p["speech"].shape)) for u, p in split_batch(list("abcde"), b, 2)]
    [(['a', 'b'], (2, 9)), (['c', 'd', 'e'], (3, 6))]
    """
    n = len(utt_id)
    if n < k:
        return [(utt_id, batch)] * k
    out = []
    for i in range(k):
        lo, hi = i * n // k, (i + 1) * n // k
        part = {}
        for key, value in batch.items():
            if torch.is_tensor(value) and value.dim() > 0 and value.size(0) == n:
                value = value[lo:hi]
                lens = batch.get(f"{key}_lengths")
                if torch.is_tensor(lens) and value.dim() > 1:
                    value = value[:, : int(lens[lo:hi].max())]
            part[key] = value
        out.append((list(utt_id[lo:hi]), part))
    return out


def activate(encoder, ms: MicroStep) -> None:
    """Put the encoder in the sub-network (and mode) of one micro-step."""
    encoder.set_active_subnet(ms.subnet)
    if ms.mode is not None:
        if not callable(getattr(encoder, "set_active_mode", None)):
            raise ValueError(f"omni_conf.dual_mode needs an encoder with streaming mode; {type(encoder).__name__} has none")
        stream_cfg = None
        if ms.chunk_size is not None:
            stream_cfg = dataclasses.replace(encoder.streaming_config, chunk_size=ms.chunk_size)
        encoder.set_active_mode(ms.mode, stream_cfg)


def reset(encoder) -> None:
    """Back to the dense (full-context) network."""
    encoder.set_max_net()
    if callable(getattr(encoder, "set_active_mode", None)):
        encoder.set_active_mode("full")


def _masked_kl(teacher: torch.Tensor, student_logits: torch.Tensor, lens: torch.Tensor,
               label_lens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over valid frames of KL(teacher || student); teacher are log-probs.

    teacher, student_logits: (B, T, V), or a joint network's (B, T, U + 1, V) with
    ``label_lens`` (B,): then the valid cells are t < lens and u <= label_lens.
    """
    logp = F.log_softmax(student_logits, dim=-1)
    kl = (teacher.exp() * (teacher - logp)).sum(-1)  # (B, T) or (B, T, U + 1)
    valid = torch.arange(kl.size(1), device=kl.device)[None, :] < lens[:, None]  # (B, T)
    if label_lens is not None:
        u = torch.arange(kl.size(2), device=kl.device)[None, :] <= label_lens.to(kl.device)[:, None]  # (B, U + 1)
        valid = valid[:, :, None] & u[:, None, :]
    return (kl * valid).sum() / valid.sum().clamp(min=1)


class TaggedModel(torch.nn.Module):
    """The ASR model seen by ESPnet's loop during a supernet epoch.

    Renames every reported stat ``x`` to ``x_<tag>`` (tag of the active
    sub-network), scales the loss by the micro-step's weight and keeps
    ``loss`` as the step's loss; with distillation on,
    captures the CTC logits (forward hook on ``ctc.ctc_lo``) and adds
    ``distill_weight * KL(teacher || student)``.
    """

    def __init__(self, model: torch.nn.Module, state: SupernetState):
        super().__init__()
        self.model = model
        self.state = state
        self._logits: Optional[torch.Tensor] = None
        self._lens: Optional[torch.Tensor] = None
        core = getattr(model, "module", model)
        self._hooks = []
        self.transducer_kd = state.cfg.distill_weight > 0 and state.cfg.distill_head == "transducer"
        if self.transducer_kd and not is_transducer(core):
            raise ValueError(
                f"omni_conf.distill_head: transducer (distill_weight={state.cfg.distill_weight}) matches the "
                "joint network's posteriors, and this model has none (model: transducer_torchaudio, decoder: "
                "transducer); use distill_head: ctc")
        if state.cfg.distill_weight > 0 and not self.transducer_kd and getattr(core, "ctc", None) is None:
            raise ValueError(
                f"omni_conf.distill_weight={state.cfg.distill_weight}: in-place distillation matches the "
                "sub-networks' CTC posteriors, and this model has no CTC head (model_conf.ctc_weight: 0); "
                "give it an auxiliary CTC (ctc_weight > 0)"
                + (", distill through its joint network (distill_head: transducer)"
                   if is_transducer(core) else "")
                + " or set distill_weight: 0")
        if state.cfg.distill_weight > 0:
            head = core.joint_network.lin_out if self.transducer_kd else core.ctc.ctc_lo
            self._hooks.append(head.register_forward_hook(self._keep_logits))
            self._hooks.append(core.encoder.register_forward_hook(self._keep_lens))

    def _keep_logits(self, module, inputs, output) -> None:
        if self.transducer_kd and output.dim() != 4:
            return  # a joint call of a search (per frame), not the loss's (B, T, U + 1, V) lattice
        self._logits = output  # (B, T, V); a joint network's (B, T, U + 1, V)

    def _keep_lens(self, module, inputs, output) -> None:
        self._lens = output[1]  # (B,)

    def remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()

    def forward(self, **batch):
        loss, stats, weight = self.model(**batch)
        ms = self.state.micro
        tag = ms.tag
        # Copies: ESPnet's loop divides the returned loss in place by accum_grad (= K here)
        # before it registers the stats, and ESPnet's models report the loss tensor itself
        # (``stats["loss_ctc"] = loss_ctc.detach()`` shares its storage), so without a copy
        # every reported loss that is the returned tensor would read 1/K of its value.
        out = {f"{k}_{tag}": v.clone() if torch.is_tensor(v) else v for k, v in stats.items()}
        loss = loss * ms.weight if ms.weight != 1.0 else loss
        if self._logits is not None and self._lens is not None:
            if tag in ("max", "full"):
                self.state.teacher = F.log_softmax(self._logits.detach(), dim=-1)
            elif self.state.teacher is not None and self.state.teacher.shape == self._logits.shape:
                label_lens = batch.get("text_lengths") if self.transducer_kd else None
                kd = _masked_kl(self.state.teacher, self._logits, self._lens, label_lens)
                loss = loss + self.state.cfg.distill_weight * kd
                out[f"distill_{tag}"] = kd.detach()
            self._logits = self._lens = None
        out["loss"] = loss.detach().clone()
        return loss, out, weight


def validation_stats(model: torch.nn.Module, batch: dict, encoder, subnets: list[MicroStep]) -> tuple[dict, torch.Tensor]:
    """Forward one validation batch through each micro-step's network.

    Returns stats with ``<key>_<tag>`` per sub-network, plus each key's mean
    over the sub-networks under its plain name (so ``valid.loss`` and
    ``valid.cer_ctc`` stay usable as ESPnet's best-model criteria).
    """
    merged: dict = {}
    sums: dict = {}
    weight = None
    for ms in subnets:
        activate(encoder, ms)
        tag = ms.tag
        retval = model(**batch)
        stats, weight = (retval["stats"], retval["weight"]) if isinstance(retval, dict) else retval[1:]
        for k, v in stats.items():
            if v is None:
                continue
            merged[f"{k}_{tag}"] = v
            sums.setdefault(k, []).append(v)
    reset(encoder)
    for k, vs in sums.items():
        merged[k] = sum(vs) / len(vs)
    return merged, weight


def valid_subnets(enc, cfg: SupernetConfig) -> list[MicroStep]:
    """The fixed validation list: ``cfg.valid_sparsities``; in dual mode the
    dense full-context network plus those sparsities in streaming mode."""
    space = SearchSpace(tuple(enc.prunable_layers()), cfg.choices, tie=cfg.tie, spec=enc.mask_spec)
    subnets = uniform_subnets(space, cfg.valid_sparsities)
    if cfg.dual_mode is None:
        return [MicroStep(t, c) for t, c in subnets]
    full = [MicroStep("full", SubnetConfig.uniform(space.layers, 0.0, space.spec), "full")]
    if cfg.dual_mode.full_weight == 0:
        full = []
    return full + [MicroStep(f"stream_{t}", c, "streaming") for t, c in subnets]


def log_plan(state: SupernetState) -> None:
    """One line describing the supernet run (at the start of each epoch)."""
    logging.info(
        "supernet: %d prunable layers, rule=%s, %d micro-steps per step, distill=%.2f, mask refresh every %d "
        "steps, schedule=%s, dual_mode=%s, %s",
        len(state.space.layers), state.cfg.sampler.rule, state.k, state.cfg.distill_weight,
        state.cfg.mask_update_interval, state.cfg.schedule, state.cfg.dual_mode,
        "each on 1/K of the mini-batch" if state.cfg.split_batch else "each on the whole mini-batch",
    )
