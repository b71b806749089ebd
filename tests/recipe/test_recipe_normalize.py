"""run.sh's training passes stage 4's global statistics only to a global_mvn model.

ESPnet's utterance_mvn takes no stats_file; before this check every training got one, so
`normalize: utterance_mvn` failed at start (issue 28, lever 1).
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def train_args(config: Path, *args: str) -> str:
    """The asr_train arguments train_asr would run (run_training stubbed to print them)."""
    script = f"""
set -euo pipefail
. local/recipe_lib.sh
python={sys.executable}
run_training() {{ shift 3; printf '%s\\n' "$@"; }}
stats_dir=STATS dump=DUMP asr_train_set=train valid_set=dev noise_rir=false
train_asr {config} EXP "$@"
"""
    res = subprocess.run(["bash", "-c", script, "bash", *args], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize(
    "conf, stats",
    [("normalize: global_mvn\n", True), ("normalize: utterance_mvn\n", False),
     ("encoder: conformer\n", False),  # ESPnet's default normalize is utterance_mvn
     ("normalize: null\n", False)],
)
def test_stats_file_only_for_global_mvn(tmp_path, conf, stats):
    config = tmp_path / "c.yaml"
    config.write_text(conf)
    out = train_args(config)
    assert ("stats_file=STATS/train/feats_stats.npz" in out) is stats


def test_a_normalize_argument_overrides_the_config(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("normalize: global_mvn\n")
    assert "stats_file" not in train_args(config, "--normalize", "utterance_mvn")
    config.write_text("normalize: utterance_mvn\n")
    assert "stats_file" in train_args(config, "--normalize", "global_mvn")


def test_the_recipes_configs_say_what_they_normalize_with():
    # Every dense/supernet config the recipes train names its normalize: no silent default.
    for path in sorted((ROOT / "conf").rglob("train_asr*.yaml")) + sorted((ROOT / "conf/ablation").glob("*.yaml")):
        assert "\nnormalize:" in "\n" + path.read_text(), path
