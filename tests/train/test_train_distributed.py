"""Supernet training with 2 processes (gloo, CPU) equals 1 process.

ESPnet splits each mini-batch over the ranks (rank r gets rows r, r + 2, ...)
and DDP averages the gradients (ESPnet scales each rank's loss by the world
size). Checked here with what makes a difference:

- SGD without gradient clipping, so a wrongly scaled gradient shows in the
  weights (Adam's update does not depend on the gradient's scale; a clipped
  gradient's norm is the clip);
- the conformer's convolution module, whose BatchNorm normalizes over the
  rows it sees: every training utterance is there twice, as consecutive rows
  of a mini-batch, so the rows rank 0 and rank 1 get (one of each pair) have
  the statistics of the rows one process gets (both of the pair);
- ``split_batch`` (each sub-network gets its own rows: one process splits the
  mini-batch, each rank splits its part) and a randomly sampled sub-network
  per step (sandwich, K = 3: max, min, rand0), which every rank must draw
  alike.

One epoch on 2 processes must then give the weights of one epoch on 1
process, up to float summation order, and that difference must be small
next to what the epoch changed.
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
PAIRS = 6  # utterances 0..5 of the tiny corpus, each twice: 2 mini-batches of 6 rows (3 pairs)
ATOL, RTOL = 1e-5, 1e-5  # float summation order: ~6e-7 seen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _paired_train_set(root: Path) -> None:
    scp, text = [], []
    for i in range(PAIRS):
        for copy in ("a", "b"):
            scp.append(f"train_utt{i}{copy} data/wav/train_utt{i}.wav\n")
            text.append(f"train_utt{i}{copy} {tiny_asr.TEXTS[i]}\n")
    (root / tiny_asr.TRAIN / "wav.scp").write_text("".join(scp))
    (root / tiny_asr.TRAIN / "text").write_text("".join(text))


def test_two_gloo_processes_equal_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_asr.write_corpus(tmp_path)
    _paired_train_set(tmp_path)
    from espnet_omni.bin import asr_train
    from espnet_omni.tasks import OmniASRTask

    asr_train.main(tiny_asr.collect_stats_flags(Path("stats"), "omni_conformer"))
    common = ["--omni_conf", "{sampler: {rule: sandwich, num_subnets: 3}, split_batch: true}",
              "--batch_size", str(PAIRS), "--max_epoch", "1", "--seed", "0",
              "--optim", "sgd", "--optim_conf", "{lr: 0.05}", "--grad_clip", "1e9", "--init_param", "init.pth"]
    flags = tiny_asr.train_flags(Path("stats"), Path("init"), "omni_conformer") + common
    torch.manual_seed(0)
    model = OmniASRTask.build_model(OmniASRTask.get_parser().parse_args(flags))
    assert any("conv_module.norm" in k for k in model.state_dict())  # the conv module is there
    init = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(init, tmp_path / "init.pth")

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}

    def launch(out: str, *extra: str) -> subprocess.Popen:
        flags = tmp_path / f"{out}.json"
        flags.write_text(json.dumps(tiny_asr.train_flags(Path("stats"), Path(out), "omni_conformer") + common))
        return subprocess.Popen([sys.executable, "-c", RUN, str(flags), *extra], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    port = _free_port()
    runs = [launch("one")] + [launch("two", "--dist_backend", "gloo", "--dist_world_size", "2", "--dist_rank", str(r),
                                     "--dist_init_method", f"tcp://127.0.0.1:{port}") for r in (0, 1)]
    for p in runs:
        assert p.wait(timeout=600) == 0, p.stdout.read()[-3000:]

    a = torch.load(tmp_path / "one/checkpoint.pth", map_location="cpu", weights_only=False)["model"]
    b = torch.load(tmp_path / "two/checkpoint.pth", map_location="cpu", weights_only=False)["model"]
    assert a.keys() == b.keys() == init.keys()
    moved = {}
    for k in a:
        if not a[k].is_floating_point():
            assert torch.equal(a[k], b[k]), k
            continue
        if k.endswith("running_var"):  # BatchNorm's unbiased update: n / (n - 1) over 2T vs T frames
            torch.testing.assert_close(b[k], a[k], atol=ATOL, rtol=2e-3, msg=k)  # 2.5e-4 seen
            continue
        torch.testing.assert_close(b[k], a[k], atol=ATOL, rtol=RTOL, msg=k)
        moved[k] = float((a[k] - init[k]).abs().max())
    # the epoch moved the convolution module's weights far past the tolerance (its conv biases
    # before the BatchNorm get no gradient: the normalization removes a constant)
    conv = {k: v for k, v in moved.items() if ".conv_module." in k and k.endswith("weight")}
    assert len(conv) == 4 and min(conv.values()) > 100 * ATOL, conv  # >= 0.017 seen
    bias = "encoder.encoders.0.conv_module.depthwise_conv.bias"  # ... and both runs started from init.pth
    torch.testing.assert_close(a[bias], init[bias], atol=1e-6, rtol=0)
    # compute.json: one writer (rank 0), CPU seconds summed over both processes
    compute = json.loads((tmp_path / "two/compute.json").read_text())
    assert compute["epochs_counted"] == 1 and compute["train_cpu_seconds"] > 0
    assert compute["subnets_per_step"] == 3 and compute["passes_per_epoch"] == 1  # split: 1/3 of the rows each
