"""Sub-network -> standalone ESPnet model directory (dense, sparse, row).

Public API:
    export_asr_model: write ``config.yaml`` + ``model.pth`` + ``export.json``.
    plan_export, ExportPlan: the exported state dict before it is written.
    ExportReport: what ``export.json`` holds.
    masked_state_dict: a model's state dict with the active masks applied.
    compact_rows, RowSizes: the ``row`` export's physical shrinking.
    exported_config, supernet_only_keys: the rewritten ``config.yaml``.
    FORMATS, DTYPES, STOCK_ENCODER, PRUNED_ENCODER.

The exported ``sparse``/``row`` models use
:class:`espnet_omni.nets.pruned_conformer.PrunedConformerEncoder`
(``encoder: omni_conformer_pruned``), which expands packed weights
(:mod:`espnet_omni.nets.packed_state`) while ``load_state_dict`` runs.
"""

from espnet_omni.export.config import (
    PRUNED_ENCODER,
    STOCK_ENCODER,
    exported_config,
    supernet_only_keys,
)
from espnet_omni.export.exporter import (
    DTYPES,
    FORMATS,
    ExportPlan,
    ExportReport,
    export_asr_model,
    masked_state_dict,
    plan_export,
)
from espnet_omni.export.row import RowSizes, compact_rows

__all__ = [
    "DTYPES",
    "FORMATS",
    "PRUNED_ENCODER",
    "STOCK_ENCODER",
    "ExportPlan",
    "ExportReport",
    "RowSizes",
    "compact_rows",
    "export_asr_model",
    "exported_config",
    "masked_state_dict",
    "plan_export",
    "supernet_only_keys",
]
