"""Gumbel-softmax product quantizer of wav2vec 2.0 (Baevski et al., 2020).

The quantizer maps each input vector to ``groups`` logit vectors of
``entries`` values each (one linear projection), picks one codebook entry per
group and concatenates the chosen entries. During training the choice is made
with the straight-through Gumbel softmax (forward: one-hot, backward: the
gradient of the soft Gumbel softmax), so the projection, the codebook and the
input all receive gradients; in evaluation mode the choice is the argmax
(deterministic).

Besides the quantized vectors it reports the *perplexities* of the code usage
in the batch and the diversity loss of the paper,
``(G * V - prob_perplexity) / (G * V)``, which pushes the batch-averaged
softmax distribution of each group toward uniform use of its ``V`` entries.
"""

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

# Added inside the logarithm of the entropy, as fairseq does, so that unused
# entries (probability 0) give a finite value and a finite gradient.
_LOG_EPS = 1e-7


@dataclass
class QuantizerOutput:
    """What :meth:`GumbelProductQuantizer.forward` returns.

    Attributes:
        quantized: ``(N, codebook_dim)`` concatenation of the chosen entry of
            every group.
        diversity_loss: 0-dim tensor ``(G * V - prob_perplexity) / (G * V)``,
            in ``[0, 1)``; differentiable.
        code_perplexity: 0-dim tensor, sum over groups of ``exp(entropy)`` of
            the batch-averaged hard one-hot choices (no gradient).
        prob_perplexity: 0-dim tensor, sum over groups of ``exp(entropy)`` of
            the batch-averaged softmax (without Gumbel noise); differentiable.
        temperature: the Gumbel softmax temperature used.
    """

    quantized: torch.Tensor
    diversity_loss: torch.Tensor
    code_perplexity: torch.Tensor
    prob_perplexity: torch.Tensor
    temperature: float


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _perplexity(probs: torch.Tensor) -> torch.Tensor:
    """Sum over groups of ``exp(entropy)`` of ``probs`` ``(G, V)``."""
    entropy = -torch.sum(probs * torch.log(probs + _LOG_EPS), dim=-1)
    return torch.exp(entropy).sum()


class GumbelProductQuantizer(torch.nn.Module):
    """Product quantizer with Gumbel-softmax code selection (wav2vec 2.0).

    Args:
        input_dim: Size of the input vectors.
        groups: Number of codebooks ``G`` (one entry is chosen from each).
        entries: Number of entries ``V`` per codebook.
        codebook_dim: Size of the quantized output; must be divisible by
            ``groups`` (each entry has ``codebook_dim // groups`` values).
        temperature: ``(start, end, decay)`` of the Gumbel softmax temperature
            schedule ``max(start * decay ** step, end)``; requires
            ``start >= end > 0`` and ``0 < decay <= 1``.

    Raises:
        ValueError: If an argument is out of its valid range.

    Example:
        >>> q = GumbelProductQuantizer(16, groups=2, entries=8, codebook_dim=8)
        >>> out = q(torch.randn(5, 16))
        >>> tuple(out.quantized.shape), out.temperature
        ((5, 8), 2.0)
    """

    def __init__(
        self,
        input_dim: int,
        groups: int = 2,
        entries: int = 320,
        codebook_dim: int = 256,
        temperature: Sequence[float] = (2.0, 0.5, 0.999995),
    ) -> None:
        super().__init__()
        _check_positive_int("input_dim", input_dim)
        _check_positive_int("groups", groups)
        _check_positive_int("entries", entries)
        _check_positive_int("codebook_dim", codebook_dim)
        if codebook_dim % groups != 0:
            raise ValueError(
                f"codebook_dim must be divisible by groups, got codebook_dim="
                f"{codebook_dim} and groups={groups}"
            )
        self.max_temp, self.min_temp, self.temp_decay = _check_temperature(
            temperature
        )
        self.input_dim = input_dim
        self.groups = groups
        self.entries = entries
        self.codebook_dim = codebook_dim
        self.entry_dim = codebook_dim // groups

        self.weight_proj = torch.nn.Linear(input_dim, groups * entries)
        self.codebook = torch.nn.Parameter(
            torch.empty(groups * entries, self.entry_dim)
        )
        self.reset_parameters()
        self._temperature = self.max_temp

    def reset_parameters(self) -> None:
        """Initialise the parameters as fairseq does.

        Projection weights N(0, 1), projection bias 0, codebook U(0, 1).
        """
        torch.nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        torch.nn.init.zeros_(self.weight_proj.bias)
        torch.nn.init.uniform_(self.codebook)

    @property
    def num_codes(self) -> int:
        """Total number of codebook entries ``G * V``."""
        return self.groups * self.entries

    @property
    def temperature(self) -> float:
        """The current Gumbel softmax temperature."""
        return self._temperature

    def set_num_updates(self, step: int) -> None:
        """Set the temperature for training step ``step`` (>= 0).

        Args:
            step: Number of optimizer updates done so far.

        Raises:
            ValueError: If ``step`` is negative or not an integer.
        """
        if isinstance(step, torch.Tensor):
            if step.numel() != 1:
                raise ValueError(f"step must be a single integer, got shape "
                                 f"{tuple(step.shape)}")
            step = int(step.item())
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        # Computed in log space: decay ** step underflows harmlessly to 0.
        if self.temp_decay == 1.0:
            value = self.max_temp
        else:
            value = self.max_temp * math.exp(step * math.log(self.temp_decay))
        self._temperature = max(value, self.min_temp)

    def extra_repr(self) -> str:
        return (
            f"groups={self.groups}, entries={self.entries}, "
            f"codebook_dim={self.codebook_dim}, temperature=("
            f"{self.max_temp}, {self.min_temp}, {self.temp_decay})"
        )

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantize ``x``.

        Args:
            x: ``(N, input_dim)`` input vectors, ``N >= 1``.

        Returns:
            The quantized vectors ``(N, codebook_dim)`` and the batch
            statistics, see :class:`QuantizerOutput`.

        Raises:
            ValueError: If ``x`` is not ``(N, input_dim)`` with ``N >= 1``.
        """
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"x must have shape (N, {self.input_dim}), got {tuple(x.shape)}"
            )
        n = x.shape[0]
        if n == 0:
            raise ValueError("x must hold at least one vector (N >= 1), got N=0")
        g, v = self.groups, self.entries

        logits = self.weight_proj(x).float().view(n, g, v)

        with torch.no_grad():
            codes = logits.argmax(dim=-1)  # (N, G)
            hard = F.one_hot(codes, v).to(logits.dtype)  # (N, G, V)
            code_perplexity = _perplexity(hard.mean(dim=0))

        avg_probs = torch.softmax(logits, dim=-1).mean(dim=0)  # (G, V)
        prob_perplexity = _perplexity(avg_probs)
        diversity_loss = (self.num_codes - prob_perplexity) / self.num_codes

        if self.training:
            onehot = F.gumbel_softmax(logits, tau=self._temperature, hard=True)
        else:
            onehot = hard

        codebook = self.codebook.view(g, v, self.entry_dim)
        quantized = torch.einsum("ngv,gvd->ngd", onehot.to(codebook.dtype), codebook)
        quantized = quantized.reshape(n, self.codebook_dim)

        return QuantizerOutput(
            quantized=quantized,
            diversity_loss=diversity_loss,
            code_perplexity=code_perplexity,
            prob_perplexity=prob_perplexity,
            temperature=self._temperature,
        )


def _check_temperature(temperature: Sequence[float]) -> tuple[float, float, float]:
    """Validate ``(start, end, decay)``; returns them as floats."""
    try:
        values = tuple(float(t) for t in temperature)
    except (TypeError, ValueError):
        raise ValueError(
            f"temperature must be a sequence (start, end, decay) of numbers, got "
            f"{temperature!r}"
        ) from None
    if len(values) != 3:
        raise ValueError(
            f"temperature must have 3 values (start, end, decay), got {temperature!r}"
        )
    start, end, decay = values
    if not all(math.isfinite(t) for t in values):
        raise ValueError(f"temperature values must be finite, got {temperature!r}")
    if not start >= end > 0:
        raise ValueError(
            f"temperature (start, end, decay) needs start >= end > 0, got "
            f"start={start}, end={end}"
        )
    if not 0 < decay <= 1:
        raise ValueError(
            f"temperature (start, end, decay) needs 0 < decay <= 1, got decay={decay}"
        )
    return start, end, decay
