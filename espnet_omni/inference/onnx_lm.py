"""The RNN LM of an ONNX export (``lm.onnx``) as an :class:`~espnet_omni.inference.lm_scorer.LMScorer`.

Usage::

    lm = OnnxLM("exp/asr/onnx")                  # a dir of bin/export_onnx --lm_train_config/--lm_file
    s = lm.start()                               # after <sos>: s.logp (V,)
    s1, s2 = lm.advance([s, s], [5, 7])          # one lm.onnx call for both

Each :class:`~espnet_omni.inference.lm_scorer.LMState` holds its prefix's recurrent state as
numpy slices ``(h, c)`` (``(h,)`` for a GRU or plain RNN), each ``(L, H)``; a step stacks the
parents' into ``(L, B, H)``, runs ``lm.onnx`` once (:mod:`espnet_omni.export.onnx_lm`) and
splits its outputs again. Drop-in for :class:`~espnet_omni.inference.lm_scorer.TorchLM` in
:func:`~espnet_omni.inference.ctc_decoder.make_ctc_search`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import numpy as np

from espnet_omni.inference.lm_scorer import LMScorer, LMState
from espnet_omni.inference.onnx_session import graph_session


class OnnxLM(LMScorer):
    """``lm.onnx`` (or ``lm.int8.onnx``) of an export dir, through ONNX Runtime.

    Args:
        onnx_dir: the export directory (``onnx.json`` with ``graphs.lm`` and ``lm``).
        int8: run ``lm.int8.onnx``.
        threads: ONNX Runtime intra-op threads (ignored with ``session_options``).
        session_options: an ``onnxruntime.SessionOptions`` to share (e.g. the recognizer's).
    """

    def __init__(self, onnx_dir: Union[str, Path], int8: bool = False, threads: int = 1,
                 session_options=None):
        import onnxruntime as ort

        meta_file = Path(onnx_dir) / "onnx.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{meta_file}: no onnx.json (write one with python -m espnet_omni.bin.export_onnx)")
        meta = json.loads(meta_file.read_text())
        key = "lm_int8" if int8 else "lm"
        if key not in meta.get("graphs", {}) or "lm" not in meta:
            raise ValueError(f"{meta_file}: no {key} graph: export with --lm_train_config/--lm_file"
                             f"{' --int8 true' if int8 else ''} (python -m espnet_omni.bin.export_onnx)")
        info = meta["lm"]
        if session_options is None:
            session_options = ort.SessionOptions()
            session_options.intra_op_num_threads = threads
            session_options.inter_op_num_threads = 1
        self.session = graph_session(onnx_dir, meta, key, session_options)
        self.inputs = [i.name for i in self.session.get_inputs()]  # token, h[, c]
        self.vocab_size, self.sos, self.eos = int(info["vocab_size"]), int(info["sos"]), int(info["eos"])
        self.zero = np.zeros((info["layers"], info["hidden"]), np.float32)  # (L, H): before <sos>

    def _score(self, prefixes, states, last):
        n_state = len(self.inputs) - 1  # 2: (h, c) of an LSTM; 1: h
        stacked = [np.stack([self.zero if s is None else s[k] for s in states], axis=1)  # (L, B, H)
                   for k in range(n_state)]
        out = self.session.run(None, dict(zip(self.inputs, [np.asarray(last, np.int64), *stacked])))
        logp, new = out[0], out[1:]  # (B, V), n_state x (L, B, H)
        return [LMState(p, tuple(x[:, i] for x in new), logp[i]) for i, p in enumerate(prefixes)]
