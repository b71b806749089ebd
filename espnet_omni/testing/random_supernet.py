"""A random-weight ``omni_conformer`` CTC experiment dir (config.yaml + model.pth),
as ESPnet's training would write it: shared by the export tests and the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import yaml

# The tests' tiny CTC supernet: 2 blocks x 16 dims, macaron + conv module, conv2d front end on
# 20 mels (tests/export, tests/serve).
TINY_TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
TINY_ENCODER_CONF = dict(
    output_size=16, attention_heads=2, linear_units=32, num_blocks=2,
    cnn_module_kernel=5, macaron_style=True, rel_pos_type="latest",
    pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
    input_layer="conv2d",
)
TINY_FRONTEND_CONF = "{n_fft: 128, hop_length: 64, n_mels: 20}"


def write_random_supernet(directory: Path, tokens: Sequence[str], encoder_conf: dict, frontend_conf: str,
                          seed: int = 0, random_batchnorm: bool = False,
                          global_mvn: bool = False) -> tuple[Path, Path]:
    """Write ``directory/{tokens.txt,config.yaml,model.pth}``; returns (config, weights).

    ``frontend_conf`` is the ``--frontend_conf`` value (e.g. ``"{n_fft: 400, hop_length: 160,
    n_mels: 40}"``); ``random_batchnorm`` gives the conv modules non-trivial running statistics;
    ``global_mvn`` normalises the features with random statistics (``feats_stats.npz``).
    """
    from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

    from espnet_omni.tasks import OmniASRTask

    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "tokens.txt"
    token_file.write_text("\n".join(tokens) + "\n")
    normalize = ["--normalize", "none"]
    if global_mvn:
        import numpy as np

        dim = int(yaml.safe_load(frontend_conf)["n_mels"])
        rng = np.random.default_rng(seed)
        mean, var, count = rng.uniform(-3, 3, dim), rng.uniform(0.5, 4.0, dim), 1000
        stats = directory / "feats_stats.npz"
        np.savez(stats, count=count, sum=mean * count, sum_square=(var + mean ** 2) * count)
        normalize = ["--normalize", "global_mvn", "--normalize_conf", f"stats_file={stats}"]
    args = OmniASRTask.get_parser().parse_args([
        "--token_list", str(token_file), "--token_type", "char",
        "--frontend_conf", frontend_conf,
        *normalize,
        "--encoder", "omni_conformer",
        "--encoder_conf", yaml.safe_dump(encoder_conf, default_flow_style=True),
        "--decoder", "none",
        "--model_conf", "{ctc_weight: 1.0}",
    ])
    torch.manual_seed(seed)
    model = OmniASRTask.build_model(args)
    if random_batchnorm:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm1d):
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
    config, weights = directory / "config.yaml", directory / "model.pth"
    with config.open("w") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    torch.save(model.state_dict(), weights)
    return config, weights
