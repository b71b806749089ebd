"""BatchNorm recalibration of one sub-network (BigNAS, OFA, slimmable networks).

A supernet's sub-networks share every BatchNorm layer (here: one per
Conformer conv module). During training each layer's running statistics are
an exponential average over whatever sub-networks the sampler ran, so in
eval mode a given sub-network is normalised with statistics of a mixture of
others: pruning the pointwise convolution in front of the depthwise one
changes the variance the BatchNorm sees. The supernet literature fixes this
after training, per chosen sub-network: reset the running statistics and
re-estimate them from a few hundred training utterances run through that
sub-network (forward only, no gradients, every other module in eval mode).

What it is worth on Table A's supernet and on an individually pruned model
(whose statistics already belong to its one sparsity) is measured by
``bench/bn_recalibration.py`` (``bench/results/bn_recalibration.md``).

:func:`recalibrate_batchnorm` is the verb; the search scores each candidate
after recalibrating it (:class:`~espnet_omni.search.subnet_eval.SubnetEvaluator`
``calibration_dir``) and the export recalibrates the chosen sub-network before
writing it (``espnet_omni.bin.export --calibration_dir``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch
from torch.nn.modules.batchnorm import _BatchNorm

logger = logging.getLogger(__name__)

B = TypeVar("B")
DEFAULT_CALIBRATION_UTTS = 200  # training utterances per recalibration


def add_calibration_arguments(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``--calibration_dir`` / ``--calibration_utts`` of the entry points that
    recalibrate (search: each candidate before scoring; export: the chosen
    sub-network before writing it); ``purpose`` ends the help's first sentence."""
    parser.add_argument("--calibration_dir", default=None,
                        help=f"training data dir: re-estimate {purpose} (espnet_omni.search.bn_calib); "
                             "default: keep the checkpoint's statistics")
    parser.add_argument("--calibration_utts", type=int, default=DEFAULT_CALIBRATION_UTTS,
                        help="utterances of --calibration_dir, spread evenly over it")


def batchnorm_layers(module: torch.nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``module`` that keep running statistics."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@contextlib.contextmanager
def kept_batchnorm_stats(module: torch.nn.Module) -> Iterator[None]:
    """Restore every BatchNorm's running statistics on exit (e.g. after
    scoring one recalibrated candidate of a search)."""
    layers = batchnorm_layers(module)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in layers]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, n) in zip(layers, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(n)


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, batches: Iterable[B],
                          forward: Callable[[B], object]) -> int:
    """Re-estimate every BatchNorm's running statistics from ``batches``.

    The statistics are reset and replaced by the plain average over the
    batches (``momentum=None``) of each batch's statistics, as the active
    sub-network computes them. Only the BatchNorm layers run in training
    mode: dropout, SpecAugment and the rest stay in eval mode, and nothing
    else changes. The model is left in eval mode.

    Args:
        model: the model (the active sub-network must be set already).
        batches: calibration batches (training data, never the test set).
        forward: runs the model on one batch, e.g.
            ``lambda b: model.encode(b.speech, b.speech_lengths)``.

    Returns:
        The number of BatchNorm layers recalibrated (0: nothing to do, the
        batches are not run).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    batches = list(batches)
    if not batches:
        raise ValueError("BatchNorm recalibration got no batches (the statistics would be reset to 0 / 1)")
    model.eval()
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    try:
        for batch in batches:
            forward(batch)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
            m.eval()
    return len(layers)
