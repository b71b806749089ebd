"""Sub-network -> standalone ESPnet model directory.

Usage (library; ``python -m espnet_omni.bin.export`` wraps it)::

    model, _ = OmniASRTask.build_model_from_file(config_yaml, checkpoint)
    report = export_asr_model(model, yaml.safe_load(open(config_yaml)),
                              SubnetConfig.from_yaml("subnet.yaml"),
                              fmt="sparse", out_dir="exp/x/export_80")

Writes ``<out_dir>/config.yaml``, ``<out_dir>/model.pth`` and
``<out_dir>/export.json`` (:class:`ExportReport`). Formats:

=========  ====================  ===============================================
format     ``encoder:``          ``model.pth``
=========  ====================  ===============================================
dense      ``conformer``         masked weights (zeros), stock shapes: stock
                                 ``espnet2.bin.asr_inference`` loads it
sparse     ``omni_conformer_     every pruned weight packed (bitmask over
           pruned``              weights / blocks / rows + kept values, see
                                 :mod:`espnet_omni.nets.packed_state`)
row        ``omni_conformer_     FFN hidden units, conv-module channels and
           pruned``              front-end channels physically removed
                                 (:mod:`.row`), the other masked rows packed;
                                 needs a ``row`` supernet
structured ``omni_conformer_     attention heads, FFN units, conv-module and
           pruned``              front-end channels physically removed
                                 (:mod:`.structured`), nothing left masked:
                                 dense smaller tensors; needs a ``group``
                                 supernet
=========  ====================  ===============================================

Packed weights are zlib-compressed by default (``codec="zlib"``; ``"raw"``:
bitmask + plain values; both lossless). ``dtype="float16"`` stores every
floating tensor (packed values included) in half precision; loading casts
back to float32 (outputs then differ by about fp16 rounding). The default
float32 export reproduces the masked supernet (to float summation order).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet_omni.export.config import PRUNED_ENCODER, STOCK_ENCODER, exported_config
from espnet_omni.export.row import PACKED_EXTRAS, compact_rows
from espnet_omni.export.structured import compact_groups
from espnet_omni.nets.omni_conformer import OmniConformerEncoder, supernet_encoder
from espnet_omni.nets.packed_state import CODECS, pack_state_dict
from espnet_omni.sparsity.granularity import require_export_format
from espnet_omni.sparsity.masks import MaskSpec
from espnet_omni.sparsity.subnet import SubnetConfig

FORMATS = ("dense", "sparse", "row", "structured")
DTYPES = {"float32": torch.float32, "float16": torch.float16}
ENCODER_PREFIX = "encoder."


@dataclass
class ExportReport:
    """What an export wrote (``export.json``).

    Attributes:
        format: one of :data:`FORMATS`.
        dtype: storage dtype of floating tensors in ``model.pth``.
        encoder: the ``encoder:`` key written to ``config.yaml``.
        nonzero_params: non-zero parameter elements of the exported model
            (buffers such as BatchNorm statistics not counted).
        total_params: parameters of the source supernet (dense count).
        model_bytes: size on disk of ``model.pth``.
        dense_model_bytes: size of the same sub-network saved ``dense`` in
            float32 (the reference for :attr:`size_ratio`).
        size_ratio: ``model_bytes / dense_model_bytes``.
        encoder_sizes: kept sizes of a ``row`` export (``encoder_conf`` keys).
        bn_calibration: ``data_dir``, ``utts``, ``layers`` of the BatchNorm
            recalibration the exported statistics come from
            (``espnet_omni.bin.export --calibration_dir``); empty: the
            checkpoint's statistics.
    """

    format: str
    dtype: str
    encoder: str
    nonzero_params: int
    total_params: int
    model_bytes: int
    dense_model_bytes: int
    size_ratio: float
    encoder_sizes: dict[str, list[int]] = field(default_factory=dict)
    bn_calibration: dict[str, Any] = field(default_factory=dict)

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text (and file, if ``path``)."""
        text = json.dumps(asdict(self), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text


def _check_choice(value: str, valid, what: str) -> None:
    if value not in valid:
        raise ValueError(f"{what}={value!r} is not one of {tuple(valid)}")


def _encoder_of(model: torch.nn.Module) -> OmniConformerEncoder:
    return supernet_encoder(model, "export")


def masked_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with each prunable encoder weight times its
    active mask (detached copies; everything else as is)."""
    enc = _encoder_of(model)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for name in enc.masked_layer_names():
            layer = enc.get_submodule(name)
            key = f"{ENCODER_PREFIX}{name}.weight"
            state[key] = layer.masked_weight().detach().clone()
    return state


def storage_tile(shape: torch.Size | tuple[int, ...], spec: MaskSpec) -> tuple[int, int]:
    """The packing tile of a weight pruned with ``spec``: ``(1, 1)`` per
    weight (unstructured, N:M), the block (block), a whole row (row).

    >>> storage_tile((8, 4, 3), MaskSpec("row")), storage_tile((8, 16), MaskSpec("nm"))
    ((1, 12), (1, 1))
    """
    cols = 1
    for d in shape[1:]:
        cols *= int(d)
    return tuple(spec.unit.tile(int(shape[0]), cols, spec))


def _saved_bytes(state: Mapping[str, torch.Tensor], directory: Path) -> int:
    """Size of ``state`` saved as ``model.pth`` (torch.save names every zip
    entry after the file's stem, so the name changes the size)."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = Path(tmp) / "model.pth"
        torch.save(dict(state), path)
        return path.stat().st_size


def _nonzero_params(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> int:
    """Non-zero entries of the exported parameters: the source model's
    parameters plus what the export added (a row export's dead-channel
    tensors); the source's buffers are not counted."""
    buffers = {name for name, _ in model.named_buffers()}
    return sum(int(torch.count_nonzero(v)) for k, v in state.items() if k not in buffers)


@dataclass
class ExportPlan:
    """An export before it is written.

    Attributes:
        state: the exported model's dense (unpacked) float32 state dict.
        tiles: weight key -> packing tile (empty for ``dense``).
        encoder: the ``encoder:`` key for ``config.yaml``.
        sizes: extra ``encoder_conf`` keys (kept sizes of a ``row`` export).
    """

    state: dict[str, torch.Tensor]
    tiles: dict[str, tuple[int, int]]
    encoder: str
    sizes: dict[str, list[int]]


def plan_export(model: torch.nn.Module, subnet: SubnetConfig, fmt: str) -> ExportPlan:
    """Mask, shrink (``row``) and choose packing tiles; the encoder's active
    sub-network is restored afterwards."""
    _check_choice(fmt, FORMATS, "format")
    enc = _encoder_of(model)
    require_export_format(enc.mask_spec.granularity, fmt)
    previous = enc.get_active_subnet()
    try:
        enc.set_active_subnet(subnet)  # raises on another architecture / spec
        state = masked_state_dict(model)
        if fmt == "dense":
            return ExportPlan(state, {}, STOCK_ENCODER, {})
        sizes: dict[str, list[int]] = {}
        spec = enc.mask_spec
        if fmt == "structured":  # nothing masked is left: dense, smaller tensors
            return ExportPlan(state, {}, PRUNED_ENCODER, compact_groups(enc, state, ENCODER_PREFIX))
        if fmt == "row":
            sizes = compact_rows(enc, state, ENCODER_PREFIX).encoder_conf()
            spec = MaskSpec("row")
        keys = [f"{ENCODER_PREFIX}{n}.weight" for n in enc.masked_layer_names()]
        keys += [k for k in state if fmt == "row" and k.endswith(PACKED_EXTRAS)]
        tiles = {
            k: storage_tile(state[k].shape, spec) for k in keys if state[k].numel()
        }
        return ExportPlan(state, tiles, PRUNED_ENCODER, sizes)
    finally:
        enc.set_active_subnet(previous)


def export_asr_model(
    model: torch.nn.Module,
    train_config: Mapping[str, Any],
    subnet: SubnetConfig,
    fmt: str,
    out_dir: str | Path,
    dtype: str = "float32",
    codec: str = "zlib",
    bn_calibration: Mapping[str, Any] | None = None,
) -> ExportReport:
    """Write ``config.yaml``, ``model.pth`` and ``export.json`` to ``out_dir``.

    Args:
        model: an ``ESPnetASRModel`` whose encoder is ``OmniConformerEncoder``,
            weights loaded (e.g. from ``OmniASRTask.build_model_from_file``).
        train_config: the experiment's ``config.yaml`` as a dict.
        subnet: the sub-network (its layer names and spec must match).
        fmt: one of :data:`FORMATS`.
        dtype: ``float32`` (exact) or ``float16`` (smaller file).
        codec: of the packed weights (``sparse``/``row``), one of
            :data:`~espnet_omni.nets.packed_state.CODECS`; both lossless.
        bn_calibration: how the model's BatchNorm statistics were
            recalibrated for ``subnet`` (recorded in ``export.json``).
    """
    _check_choice(dtype, DTYPES, "dtype")
    _check_choice(codec, CODECS, "codec")
    plan = plan_export(model, subnet, fmt)
    store = None if dtype == "float32" else DTYPES[dtype]
    saved = pack_state_dict(plan.state, plan.tiles, store, codec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = exported_config(train_config, plan.encoder, plan.sizes)
    with (out / "config.yaml").open("w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(config, f, indent=4, sort_keys=False)
    torch.save(saved, out / "model.pth")
    model_bytes = (out / "model.pth").stat().st_size
    if fmt == "dense" and store is None:
        dense_bytes = model_bytes
    else:
        dense_bytes = _saved_bytes(plan_export(model, subnet, "dense").state, out)
    report = ExportReport(
        format=fmt,
        dtype=dtype,
        encoder=plan.encoder,
        nonzero_params=_nonzero_params(model, plan.state),
        total_params=sum(p.numel() for p in model.parameters()),
        model_bytes=model_bytes,
        dense_model_bytes=dense_bytes,
        size_ratio=round(model_bytes / dense_bytes, 4),
        encoder_sizes=plan.sizes,
        bn_calibration=dict(bn_calibration or {}),
    )
    report.to_json(out / "export.json")
    logging.info("exported %s model to %s: %s", fmt, out, report)
    return report
