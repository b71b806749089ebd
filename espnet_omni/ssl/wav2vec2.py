"""The wav2vec 2.0 objective as an ESPnet SSL loss (Baevski et al., 2020).

wav2vec 2.0 ("wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations", NeurIPS 2020) masks spans of the encoder input and trains
the encoder to identify, at every masked frame, the *quantized* unmasked
input of that frame among ``K`` distractors: quantized inputs of other masked
frames of the same utterance. The loss is

    contrastive + diversity_weight * diversity + feature_penalty_weight * pen

where ``contrastive`` is the cross-entropy over the cosine similarities
(divided by a temperature) between the projected context vector and the
projected targets, ``diversity`` pushes the Gumbel-softmax product quantizer
(:class:`~espnet_omni.ssl.quantizer.GumbelProductQuantizer`) to use all its
codebook entries, and ``pen`` is the mean squared value of the (non-pad)
encoder input features.

In wav2vec 2.0 a LayerNorm sits between the feature encoder and both the
quantizer and the Transformer, so the feature penalty only bounds the
feature encoder's raw scale. In ESPnet's SSL model the pre-encoder output
goes straight into the encoder, so by default (``normalize_features: true``)
the quantizer gets a layer-normalized copy (no affine weights) of the
features: the targets cannot collapse by shrinking the features. Keep
``feature_penalty_weight`` at 0 in that setting: the penalty would shrink
the encoder input itself. (With the paper's weight of 10 and no LayerNorm, a
run on the embedded corpus drove the features to ~1e-6, the hard codes to a
perplexity of ~2 and the contrastive loss stayed at chance, ``ln(K + 1)``.)

The loss needs the ``mask`` util of ESPnet's SSL task (it replaces the masked
encoder input frames by a learned embedding and reports them in
``mask_info["mask_m"]``) and the *unmasked* encoder input as ``features``.
Usage in an ESPnet SSL training config::

    loss:
    - name: wav2vec2
      conf: {final_dim: 128, num_negatives: 50, codebook_entries: 64}
    util:
    - name: mask
      conf: {mask_prob: 0.65, mask_length: 5}

The building blocks :func:`sample_negatives` and :func:`contrastive_logits`
are plain functions so that they can be tested and reused alone.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.ssl.loss.abs_loss import AbsSSLLoss

from espnet_omni.ssl.quantizer import GumbelProductQuantizer, _check_temperature


def sample_negatives(
    mask_m: torch.Tensor,
    num_negatives: int,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw distractor frames for every masked frame.

    For each masked frame (``M = mask_m.sum()`` of them, in row-major order:
    utterance ``b`` first, then time ``t``) draw ``num_negatives`` indices into
    the flattened ``(B * T)`` frame axis, uniformly and **with replacement**
    from the *other* masked frames of the *same* utterance (never the frame
    itself). Because the draws are with replacement, as in wav2vec 2.0,
    ``num_negatives`` may exceed the number of masked frames of an utterance;
    the same distractor then simply appears several times.

    An utterance with fewer than 2 masked frames has no possible distractor:
    its frames are marked invalid in ``valid`` and their rows of ``indices``
    hold the frame's own index (they must be ignored).

    Args:
        mask_m: ``(B, T)`` bool tensor, True at masked frames.
        num_negatives: ``K >= 1``, distractors per masked frame.
        generator: Optional random generator, for reproducible draws. Numbers
            are drawn on the generator's device and moved to ``mask_m``'s.

    Returns:
        ``indices``: ``(M, K)`` long tensor of flattened frame indices
        ``b * T + t``; ``valid``: ``(M,)`` bool tensor, False for the frames
        of utterances with fewer than 2 masked frames.

    Raises:
        ValueError: If ``mask_m`` is not 2-D or ``num_negatives < 1``.

    Example:
        >>> mask = torch.tensor([[True, False, True], [False, True, False]])
        >>> idx, valid = sample_negatives(mask, 2)
        >>> idx[:2].tolist(), valid.tolist()
        ([[2, 2], [0, 0]], [True, True, False])
    """
    if mask_m.dim() != 2:
        raise ValueError(f"mask_m must have shape (B, T), got {tuple(mask_m.shape)}")
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or (
        num_negatives < 1
    ):
        raise ValueError(f"num_negatives must be an integer >= 1, got {num_negatives!r}")
    mask = mask_m.bool()
    device = mask.device
    _, t_len = mask.shape

    flat_idx = mask.reshape(-1).nonzero(as_tuple=True)[0]  # (M,)
    m = flat_idx.numel()
    counts = mask.sum(dim=1)  # (B,)
    starts = torch.cumsum(counts, dim=0) - counts  # first row of each utterance
    utt = torch.div(flat_idx, t_len, rounding_mode="floor")  # (M,)
    n = counts[utt]  # masked frames of the frame's utterance
    start = starts[utt]
    rank = torch.arange(m, device=device) - start  # position within utterance
    valid = n >= 2

    rand_device = generator.device if generator is not None else device
    u = torch.rand(
        (m, num_negatives), generator=generator, device=rand_device, dtype=torch.float64
    ).to(device)
    choices = (n - 1).clamp(min=1).unsqueeze(1)  # other frames to choose from
    j = torch.minimum((u * choices).floor().long(), choices - 1)
    j = j + (j >= rank.unsqueeze(1)).long()  # skip the frame itself
    j = torch.where(valid.unsqueeze(1), j, rank.unsqueeze(1))
    indices = flat_idx[start.unsqueeze(1) + j]
    return indices, valid


def contrastive_logits(
    context: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Cosine-similarity logits of the wav2vec 2.0 contrastive task.

    Args:
        context: ``(M, D)`` projected context vectors.
        positives: ``(M, D)`` true targets.
        negatives: ``(M, K, D)`` distractors.
        temperature: ``> 0``; the cosine similarities are divided by it.

    Returns:
        ``(M, 1 + K)`` float32 logits; column 0 is the positive. A distractor
        exactly equal to its positive (all elements) gets ``-inf`` (as in
        fairseq), so it never competes with the positive.

    Raises:
        ValueError: If the shapes disagree or ``temperature`` is not > 0.
    """
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if (
        context.dim() != 2
        or positives.shape != context.shape
        or negatives.dim() != 3
        or negatives.shape[0] != context.shape[0]
        or negatives.shape[2] != context.shape[1]
    ):
        raise ValueError(
            "expected context (M, D), positives (M, D) and negatives (M, K, D), got "
            f"{tuple(context.shape)}, {tuple(positives.shape)} and "
            f"{tuple(negatives.shape)}"
        )
    targets = torch.cat([positives.unsqueeze(1), negatives], dim=1).float()
    logits = F.cosine_similarity(context.float().unsqueeze(1), targets, dim=-1)
    logits = logits / temperature
    neg_is_pos = (negatives == positives.unsqueeze(1)).all(dim=-1)  # (M, K)
    is_pos_col = torch.zeros_like(neg_is_pos[:, :1])
    return logits.masked_fill(torch.cat([is_pos_col, neg_is_pos], dim=1), float("-inf"))


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _nonnegative_float(name: str, value: float, positive: bool = False) -> float:
    bound = "> 0" if positive else ">= 0"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


class Wav2Vec2Loss(AbsSSLLoss):
    """wav2vec 2.0 contrastive + diversity + feature-penalty loss.

    Args:
        encoder_output_size: Size ``D_enc`` of the encoder output (given by
            ESPnet's SSL task).
        feature_dim: Size of the unmasked encoder input ``features``;
            defaults to ``encoder_output_size``.
        final_dim: Size of the space in which context and targets are
            compared.
        num_negatives: Distractors per masked frame (``>= 1``).
        logit_temperature: Divides the cosine similarities (``> 0``).
        codebook_groups: Quantizer codebooks ``G``.
        codebook_entries: Entries ``V`` per codebook.
        codebook_dim: Size of the quantized vectors, divisible by
            ``codebook_groups``; defaults to ``final_dim``.
        quantizer_temperature: Gumbel temperature schedule
            ``(start, end, decay)``, see
            :class:`~espnet_omni.ssl.quantizer.GumbelProductQuantizer`.
        diversity_weight: Weight (``>= 0``) of the codebook diversity loss.
        feature_penalty_weight: Weight (``>= 0``) of the mean squared input
            features (0 recommended here, see the module doc).
        normalize_features: Quantize ``layer_norm(features)`` (no affine
            weights) instead of the raw features (see the module doc).

    Raises:
        ValueError: If an argument is out of its valid range (the message
            names it).
    """

    def __init__(
        self,
        encoder_output_size: int,
        feature_dim: Optional[int] = None,
        final_dim: int = 256,
        num_negatives: int = 100,
        logit_temperature: float = 0.1,
        codebook_groups: int = 2,
        codebook_entries: int = 320,
        codebook_dim: Optional[int] = None,
        quantizer_temperature: Sequence[float] = (2.0, 0.5, 0.999995),
        diversity_weight: float = 0.1,
        feature_penalty_weight: float = 0.0,
        normalize_features: bool = True,
    ) -> None:
        super().__init__()
        _positive_int("encoder_output_size", encoder_output_size)
        feature_dim = encoder_output_size if feature_dim is None else feature_dim
        _positive_int("feature_dim", feature_dim)
        _positive_int("final_dim", final_dim)
        _positive_int("num_negatives", num_negatives)
        _positive_int("codebook_groups", codebook_groups)
        _positive_int("codebook_entries", codebook_entries)
        codebook_dim = final_dim if codebook_dim is None else codebook_dim
        _positive_int("codebook_dim", codebook_dim)
        if codebook_dim % codebook_groups != 0:
            raise ValueError(
                f"codebook_dim must be divisible by codebook_groups, got codebook_dim="
                f"{codebook_dim} and codebook_groups={codebook_groups}"
            )
        try:
            _check_temperature(quantizer_temperature)
        except ValueError as e:
            raise ValueError(f"quantizer_temperature: {e}") from None
        self.logit_temperature = _nonnegative_float(
            "logit_temperature", logit_temperature, positive=True
        )
        self.diversity_weight = _nonnegative_float("diversity_weight", diversity_weight)
        self.feature_penalty_weight = _nonnegative_float(
            "feature_penalty_weight", feature_penalty_weight
        )
        if not isinstance(normalize_features, bool):
            raise ValueError(f"normalize_features must be true or false, got {normalize_features!r}")
        self.normalize_features = normalize_features
        self.encoder_output_size = encoder_output_size
        self.feature_dim = feature_dim
        self.num_negatives = num_negatives

        self.util_attributes = ["mask"]
        self.required_inputs = [
            "encoder_output",
            "encoder_output_lengths",
            "features",
            "mask_info",
        ]

        self.final_proj = torch.nn.Linear(encoder_output_size, final_dim)
        self.quantizer = GumbelProductQuantizer(
            feature_dim,
            groups=codebook_groups,
            entries=codebook_entries,
            codebook_dim=codebook_dim,
            temperature=quantizer_temperature,
        )
        self.project_q = torch.nn.Linear(codebook_dim, final_dim)

    def step(self, global_step: int) -> None:
        """Update the quantizer temperature; ESPnet calls this every step.

        Args:
            global_step: Number of training updates done (int or 1-element
                tensor).
        """
        self.quantizer.set_num_updates(global_step)

    def forward(
        self,
        encoder_output: List[torch.Tensor],
        encoder_output_lengths: Optional[torch.Tensor],
        features: torch.Tensor,
        mask_info: Dict[str, torch.Tensor],
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Compute the wav2vec 2.0 loss.

        Args:
            encoder_output: Encoder outputs ``(B, T, D_enc)`` per layer; the
                last one is the context.
            encoder_output_lengths: ``(B,)`` valid frames per utterance
                (None: no padding).
            features: ``(B, T, feature_dim)`` *unmasked* encoder input (not
                detached: the feature penalty trains what produced it).
            mask_info: ``{"mask_m": (B, T) bool}``, True at masked frames;
                masked frames beyond the lengths are ignored.

        Returns:
            The loss (0-dim tensor) and detached statistics ``w2v_*``.

        Raises:
            ValueError: If the shapes disagree, or no utterance has at least 2
                masked frames.
            FloatingPointError: If the loss is not finite.
        """
        context, mask_m = self._checked_inputs(encoder_output, features, mask_info)
        b, t_len, _ = context.shape
        device = context.device
        if encoder_output_lengths is None:
            nonpad = torch.ones(b, t_len, dtype=torch.bool, device=device)
        else:
            lengths = encoder_output_lengths.to(device).view(b, 1)
            nonpad = torch.arange(t_len, device=device).unsqueeze(0) < lengths
        mask = mask_m.to(device).bool() & nonpad

        neg_index, valid = sample_negatives(mask, self.num_negatives)
        if not bool(valid.any()):
            raise ValueError(
                "wav2vec2 loss: no utterance has at least 2 masked frames, so there "
                "are no distractors (mask_prob too low or utterances too short)"
            )
        m = neg_index.shape[0]

        q_in = features[mask]
        if self.normalize_features:
            q_in = F.layer_norm(q_in.float(), (self.feature_dim,))
        q = self.quantizer(q_in)
        y = self.project_q(q.quantized)  # (M, final_dim)
        c = self.final_proj(context[mask])  # (M, final_dim)

        row_of = torch.full((b * t_len,), -1, dtype=torch.long, device=device)
        row_of[mask.view(-1)] = torch.arange(m, device=device)
        y_neg = y[row_of[neg_index]]  # (M, K, final_dim)

        logits = contrastive_logits(c, y, y_neg, self.logit_temperature)[valid]
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=device)
        contrastive = F.cross_entropy(logits, target)
        feature_pen = features[nonpad].float().pow(2).mean()
        loss = self._weighted_sum(contrastive, q.diversity_loss, feature_pen)

        with torch.no_grad():
            correct = logits[:, 0] > logits[:, 1:].max(dim=-1).values
            stats = {
                "w2v_contrastive": contrastive.detach(),
                "w2v_diversity": q.diversity_loss.detach(),
                "w2v_feature_pen": feature_pen.detach(),
                "w2v_acc": correct.float().mean(),
                "w2v_code_ppl": q.code_perplexity.detach(),
                "w2v_prob_ppl": q.prob_perplexity.detach(),
                "w2v_temp": q.temperature,
                "w2v_masked_frac": valid.sum().float() / nonpad.sum().float(),
            }
        return loss, stats

    def _checked_inputs(
        self, encoder_output: List[torch.Tensor], features: torch.Tensor,
        mask_info: Optional[Dict[str, torch.Tensor]],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The context (the last encoder output) and the mask, their shapes checked."""
        if len(encoder_output) == 0:
            raise ValueError("encoder_output is empty")
        context = encoder_output[-1]
        mask_m = None if mask_info is None else mask_info.get("mask_m")
        if mask_m is None:
            raise ValueError(
                "mask_info['mask_m'] is missing: wav2vec2 needs the 'mask' util "
                "with mask_prob > 0"
            )
        if (
            context.dim() != 3
            or features.dim() != 3
            or features.shape[:2] != context.shape[:2]
            or tuple(mask_m.shape) != tuple(context.shape[:2])
            or features.shape[2] != self.feature_dim
            or context.shape[2] != self.encoder_output_size
        ):
            raise ValueError(
                "expected context (B, T, "
                f"{self.encoder_output_size}), features (B, T, {self.feature_dim}) "
                f"and mask_m (B, T), got context {tuple(context.shape)}, features "
                f"{tuple(features.shape)} and mask_m {tuple(mask_m.shape)}"
            )
        return context, mask_m

    def _weighted_sum(self, contrastive: torch.Tensor, diversity: torch.Tensor,
                      feature_pen: torch.Tensor) -> torch.Tensor:
        """The loss: the contrastive term plus the weighted diversity and feature penalty."""
        loss = contrastive
        terms = {"contrastive": contrastive}
        if self.diversity_weight > 0:
            loss = loss + self.diversity_weight * diversity
            terms["diversity"] = diversity
        if self.feature_penalty_weight > 0:
            loss = loss + self.feature_penalty_weight * feature_pen
            terms["feature_penalty"] = feature_pen
        if not bool(torch.isfinite(loss)):
            bad = [k for k, v in terms.items() if not bool(torch.isfinite(v))]
            raise FloatingPointError(
                f"wav2vec2 loss is not finite ({loss.item()}); non-finite term(s): "
                f"{', '.join(bad) or 'none alone (their weighted sum overflowed)'}"
            )
        return loss
