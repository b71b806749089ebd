"""The exported model's ``config.yaml``: the training config, encoder rewritten.

Only ``encoder`` and ``encoder_conf`` change; every other key (frontend,
normalize, token_list, model_conf, ...) is copied, so the exported directory
builds with the same ``ASRTask.build_model`` path as the experiment did.

>>> conf = {"encoder": "omni_conformer", "encoder_conf": {"output_size": 8,
...     "mask_granularity": "row", "prune_frontend": True}, "ctc_conf": {}}
>>> out = exported_config(conf, "conformer")
>>> out["encoder"], out["encoder_conf"], out["ctc_conf"]
('conformer', {'output_size': 8}, {})
"""

from __future__ import annotations

import copy
import inspect
from typing import Any, Mapping

from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet_omni.nets.omni_conformer import OmniConformerEncoder

#: ESPnet's key for the stock Conformer (``dense`` exports).
STOCK_ENCODER = "conformer"
#: Our key for :class:`~espnet_omni.nets.pruned_conformer.PrunedConformerEncoder`
#: (``sparse`` and ``row`` exports); registered by ``espnet_omni.tasks``.
PRUNED_ENCODER = "omni_conformer_pruned"


def _params(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def supernet_only_keys() -> tuple[str, ...]:
    """``OmniConformerEncoder`` arguments a stock ``ConformerEncoder`` lacks.

    Computed from the two signatures, so supernet options added later are
    dropped too.

    >>> "mask_granularity" in supernet_only_keys(), "output_size" in supernet_only_keys()
    (True, False)
    """
    return tuple(sorted(_params(OmniConformerEncoder) - _params(ConformerEncoder)))


def stock_encoder_conf(encoder_conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """``encoder_conf`` without the supernet-only keys (a copy)."""
    drop = set(supernet_only_keys())
    return {k: copy.deepcopy(v) for k, v in (encoder_conf or {}).items() if k not in drop}


def exported_config(
    train_config: Mapping[str, Any],
    encoder: str,
    extra_encoder_conf: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The training config with ``encoder: <encoder>`` and a stock ``encoder_conf``
    plus ``extra_encoder_conf`` (e.g. the kept sizes of a ``row`` export)."""
    if "encoder_conf" in train_config and not isinstance(
        train_config["encoder_conf"], Mapping
    ):
        raise ValueError(
            f"config key 'encoder_conf' must be a mapping, got "
            f"{type(train_config['encoder_conf']).__name__}"
        )
    out = copy.deepcopy(dict(train_config))
    out["encoder"] = encoder
    conf = stock_encoder_conf(train_config.get("encoder_conf"))
    conf.update(copy.deepcopy(dict(extra_encoder_conf or {})))
    out["encoder_conf"] = conf
    return out
