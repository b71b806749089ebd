"""RESULTS.md and the bench results: the preamble is generated, and no machine path is written (issue 15)."""

import re
from pathlib import Path

import pytest

from espnet_omni.scoring import tables
from espnet_omni.scoring.results_file import HEADER, replace_section

ROOT = Path(__file__).resolve().parents[2]
# an absolute path: after a space, backtick, quote, `=` or `(`, a `/` and a name (not "1 / x", not a URL)
ABSOLUTE = re.compile(r"""(?:^|[\s`'"=(])(/[\w.][^\s`'"]*)""", re.M)


def test_a_new_results_file_starts_with_the_generic_rule_only(tmp_path):
    p = tmp_path / "RESULTS.md"
    replace_section(p, "a", "x\n")
    text = p.read_text()
    assert text == HEADER + "\n<!-- BEGIN a -->\nx\n<!-- END a -->\n"
    assert "Every section below is written by a script from a real run" in HEADER
    assert "relative to the recipe directory" in HEADER
    # nothing about any one run (those paragraphs live in their sections)
    for word in ("baseline", "Table", "H100", "GPU", "2-core", "supernet"):
        assert word not in HEADER


def test_committed_results_preamble_is_the_generated_one():
    """RESULTS.md's text before its first section is what replace_section writes for a new file:
    nothing typed by hand there."""
    text = (ROOT / "RESULTS.md").read_text()
    assert text.split("<!-- BEGIN ", 1)[0] == HEADER + "\n"


def _committed_results():
    return [ROOT / "RESULTS.md", ROOT / "README.md", ROOT / "bench" / "README.md",
            *sorted((ROOT / "bench" / "results").glob("*.md")), *sorted((ROOT / "bench" / "results").glob("*.json"))]


@pytest.mark.parametrize("path", _committed_results(), ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_results_name_no_machine_path(path):
    if path.name.endswith("_quick.md") or path.name.endswith("_quick.json"):
        pytest.skip("git-ignored smoke run")
    found = ABSOLUTE.findall(path.read_text())
    assert not found, f"{path.relative_to(ROOT)}: machine paths {found[:5]} (write them with tables.rel / rel_text)"


def test_rel_text_makes_every_absolute_path_relative(tmp_path):
    root = tmp_path / "main"
    cmd = (f"./run.sh --dir {root} --stage 17 --table_b_rows 1\\ 2 --results_file {root}/RESULTS.md "
           f"--table_a_also v2={root}/exp/a.v2\\ v1={tmp_path}/gpu/exp/a.v1 --init_param {root}/m.pth:encoder:encoder")
    assert tables.rel_text(cmd, root=root) == (
        "./run.sh --dir . --stage 17 --table_b_rows 1\\ 2 --results_file RESULTS.md "
        "--table_a_also v2=exp/a.v2\\ v1=../gpu/exp/a.v1 --init_param m.pth:encoder:encoder")
    prose = "CPU s / wall s, 1/K of the batch, sub/del/ins, https://example.org/x and (`exp/b`)"
    assert tables.rel_text(prose, root=root) == prose
    assert tables.rel(root, root=root) == "." and tables.rel(tmp_path / "gpu", root=root) == "../gpu"


def test_rel_keeps_links_inside_the_checkout(tmp_path):
    root, elsewhere = tmp_path / "main", tmp_path / "abl" / "base"
    root.mkdir()
    elsewhere.mkdir(parents=True)
    (root / "base").symlink_to(elsewhere)
    assert tables.rel(root / "base" / "exp", root=root) == "base/exp"
    # the checkout reached through a link: the real paths are compared
    link = tmp_path / "link"
    link.symlink_to(root)
    assert tables.rel(link / "exp", root=root) == "exp"
