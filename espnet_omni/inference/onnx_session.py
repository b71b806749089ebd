"""Open one graph of an ONNX export, refusing one that is not the export's.

``onnx.json`` records each graph file's sha256 (:func:`espnet_omni.export.onnx_export.record_digests`);
a graph copied in from another export (another model, another token list) decoded silently
before. An export written before the digests existed opens unchecked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from espnet_omni.export.onnx_export import file_sha256


def graph_session(onnx_dir: str | Path, meta: dict[str, Any], key: str, options):
    """``onnxruntime.InferenceSession`` of ``meta["graphs"][key]`` under ``onnx_dir``; a missing
    file raises ``FileNotFoundError``, a file whose sha256 is not ``onnx.json``'s ``ValueError``,
    each naming the file."""
    import onnxruntime as ort

    name = meta["graphs"][key]
    path = Path(onnx_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing ({key} graph of {Path(onnx_dir) / 'onnx.json'}); "
                                "export again with python -m espnet_omni.bin.export_onnx")
    want = meta.get("sha256", {}).get(name)
    if want is not None:
        got = file_sha256(path)
        if got != want:
            raise ValueError(f"{path}: sha256 {got[:12]}..., {Path(onnx_dir) / 'onnx.json'} was written with "
                             f"{want[:12]}...: not this export's {key} graph (copied from another export?); "
                             "export again with python -m espnet_omni.bin.export_onnx")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
