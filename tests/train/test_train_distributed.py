"""Supernet training with 2 processes (gloo, CPU) equals 1 process.

ESPnet splits each mini-batch over the ranks and DDP averages the gradients
(ESPnet scales each rank's loss by the world size), so with no batch-size-
dependent layer (the conv module's BatchNorm is switched off here) and the
same deterministic sub-networks per step (sandwich: max + min), one epoch on
2 processes must give the parameters of one epoch on 1 process, up to float
summation order.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from espnet_omni.testing import tiny_asr

ROOT = Path(__file__).resolve().parents[2]
RUN = """
import json, sys
from espnet_omni.bin import asr_train
asr_train.main(json.load(open(sys.argv[1])) + sys.argv[2:])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_asr.write_corpus(tmp_path)
    from espnet_omni.bin import asr_train

    asr_train.main(tiny_asr.collect_stats_flags(Path("stats"), "omni_conformer"))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    common = ["--omni_conf", "{sampler: {rule: sandwich, num_subnets: 2}}", "--encoder_conf", "use_cnn_module=false",
              "--max_epoch", "1", "--seed", "0"]

    def launch(out: str, *extra: str) -> subprocess.Popen:
        flags = tmp_path / f"{out}.json"
        flags.write_text(json.dumps(tiny_asr.train_flags(Path("stats"), Path(out), "omni_conformer") + common))
        return subprocess.Popen([sys.executable, "-c", RUN, str(flags), *extra], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    one = launch("one")
    assert one.wait(timeout=600) == 0, one.stdout.read()[-3000:]
    port = _free_port()
    ranks = [launch("two", "--dist_backend", "gloo", "--dist_world_size", "2", "--dist_rank", str(r),
                    "--dist_init_method", f"tcp://127.0.0.1:{port}") for r in (0, 1)]
    for p in ranks:
        assert p.wait(timeout=600) == 0, p.stdout.read()[-3000:]

    a = torch.load(tmp_path / "one/checkpoint.pth", map_location="cpu", weights_only=False)["model"]
    b = torch.load(tmp_path / "two/checkpoint.pth", map_location="cpu", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(b[k], a[k], atol=5e-4, rtol=1e-3, msg=k)
    # compute.json: one writer (rank 0), CPU seconds summed over both processes
    compute = json.loads((tmp_path / "two/compute.json").read_text())
    assert compute["epochs_counted"] == 1 and compute["train_cpu_seconds"] > 0
