"""The geometry of ESPnet's ``conv2d*`` subsampling front ends, in one place.

A ``Conv2dSubsampling*`` is a ``conv`` Sequential of Conv2d / ReLU and an ``out`` Linear; the
structured groups (:mod:`espnet_omni.nets.conformer_units`), the physically smaller export
(:mod:`espnet_omni.export.structured`, :mod:`espnet_omni.export.row`) and the pruned rebuild
(:mod:`espnet_omni.nets.pruned_conformer`) find its convolutions here.
"""

from __future__ import annotations

import torch


def subsampling_convs(embed: torch.nn.Module) -> list[int]:
    """Indices in ``embed.conv`` of the Conv2d layers of a conv2d* front end.

    Raises unless ``embed`` is a ``Conv2dSubsampling*`` (a ``conv`` Sequential
    of Conv2d / ReLU and an ``out`` Linear).
    """
    conv = getattr(embed, "conv", None)
    out = getattr(embed, "out", None)
    if not isinstance(conv, torch.nn.Sequential) or not isinstance(out, torch.nn.Linear):
        raise ValueError(
            f"front end {type(embed).__name__} is not a conv2d subsampling "
            "(input_layer conv2d / conv2d1 / conv2d2 / conv2d6 / conv2d8)"
        )
    return [i for i, m in enumerate(conv) if isinstance(m, torch.nn.Conv2d)]
