"""--jobs FILE: several command lines of one entry point in one process (bin/jobs.py)."""

import pytest

from espnet_omni.bin.jobs import run_jobs


def test_each_line_runs_once_in_order_and_bad_files_are_one_line(tmp_path):
    f = tmp_path / "jobs"
    f.write_text("--a 'x y' --b\n\n--c z\n")
    seen = []
    assert run_jobs(["--jobs", str(f)], seen.append) and seen == [["--a", "x y", "--b"], ["--c", "z"]]
    assert not run_jobs(["--c", "z"], seen.append) and len(seen) == 2  # no --jobs: the caller decodes
    with pytest.raises(SystemExit, match="--jobs gives every option per line; drop --x"):
        run_jobs(["--jobs", str(f), "--x"], seen.append)
    f.write_text("--a 'unclosed\n")
    with pytest.raises(SystemExit, match=r"jobs:1: No closing quotation"):
        run_jobs(["--jobs", str(f)], seen.append)
    f.write_text("--jobs other\n")
    with pytest.raises(SystemExit, match=r"jobs:1: a job cannot hold --jobs"):
        run_jobs(["--jobs", str(f)], seen.append)
    with pytest.raises(SystemExit, match="--jobs .*nowhere"):
        run_jobs(["--jobs", str(tmp_path / "nowhere")], seen.append)
