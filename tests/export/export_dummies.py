"""Test dummies for tests/export (not a test module): a tiny supernet experiment."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import yaml

from espnet_omni.export import PRUNED_ENCODER
from espnet_omni.nets.pruned_conformer import PrunedConformerEncoder
from espnet_omni.tasks import ASR_CHOICES, OmniASRTask
from espnet_omni.testing.random_supernet import (TINY_ENCODER_CONF, TINY_FRONTEND_CONF, TINY_TOKENS,
                                                 write_random_supernet)

TOKENS, ENCODER_CONF = TINY_TOKENS, TINY_ENCODER_CONF
# Block patterns of OmniConformerEncoder plus the whole front end (conv.0 too).
ALL_PRUNABLE = [
    "encoders.*.self_attn.linear_[qkvo]*", "encoders.*.feed_forward*.w_[12]",
    "encoders.*.conv_module.pointwise_conv[12]", "embed.conv.*", "embed.out",
]


@pytest.fixture(scope="session")
def pruned_registered():
    """``omni_conformer_pruned`` offered by OmniASRTask (if tasks/ lacks it)."""
    added = PRUNED_ENCODER not in ASR_CHOICES.choices("encoder").classes
    if added:
        ASR_CHOICES.register("encoder", PRUNED_ENCODER, PrunedConformerEncoder)
    yield
    if added:
        ASR_CHOICES.unregister("encoder", PRUNED_ENCODER)


def make_experiment(directory: Path, seed: int = 0, global_mvn: bool = False,
                    **supernet_conf) -> tuple[Path, Path]:
    """Write ``config.yaml`` + ``model.pth`` of a random tiny supernet (``global_mvn``:
    with random feature statistics)."""
    return write_random_supernet(directory, TOKENS, {**ENCODER_CONF, **supernet_conf},
                                 TINY_FRONTEND_CONF, seed, random_batchnorm=True,
                                 global_mvn=global_mvn)


def load_supernet(config: Path, weights: Path):
    """(model, config dict) as the export entry point builds them."""
    model, _ = OmniASRTask.build_model_from_file(config, weights, "cpu")
    return model.eval(), yaml.safe_load(config.read_text())


def random_subnet(model, choices=(0.3, 0.5, 0.8), seed: int = 0):
    """A per-layer random sub-network of the model's encoder."""
    space = model.encoder.search_space(choices)
    return model.encoder.sample_active_subnet(space, random.Random(seed))


def speech_batch():
    """Waveforms ``(B, S)`` with different lengths (padding exercised)."""
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(2, 3200, generator=g)
    return speech, torch.tensor([3200, 2400])


@torch.no_grad()
def encode(model, speech, lengths) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder output ``(B, T', D)`` (padded frames included) and lengths."""
    return model.eval().encode(speech, lengths)
