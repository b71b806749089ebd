"""tools/install.sh: each checkout's .venv runs that checkout's code, whatever another
clone on the machine installs (issue 15 item 11); the shared venv is never written to."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHERE = "import espnet_omni; print(espnet_omni.__file__)"


def shared_venv() -> Path | None:
    """The shared venv this checkout's .venv uses (its mark; an old-layout .venv is a symlink)."""
    venv = ROOT / ".venv"
    if (venv / ".espnet_omni").is_file():
        return Path((venv / ".espnet_omni").read_text().splitlines()[0])
    return venv.resolve() if venv.is_symlink() else None


def clone(dst: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dst)], check=True, timeout=60)
    for f in ("tools/install.sh", "requirements.txt"):  # the working tree's, committed or not
        shutil.copy2(ROOT / f, dst / f)
    return dst


def key(checkout: Path) -> str:
    return hashlib.sha256((checkout / "requirements.txt").read_bytes()).hexdigest()[:12]


def install(checkout: Path, cache: Path, rc: int = 0) -> str:
    r = subprocess.run(["tools/install.sh", "--no-apt"], cwd=checkout, capture_output=True, text=True,
                       env={**os.environ, "ESPNET_OMNI_CACHE": str(cache)}, timeout=120)
    assert r.returncode == rc, r.stderr
    return r.stderr


def run(exe: Path, *args: str, cwd: Path) -> str:
    """EXE ARGS from CWD (not a checkout), without this test run's PYTHONPATH or venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    r = subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def imported_from(checkout: Path, cwd: Path) -> Path:
    return Path(run(checkout / ".venv/bin/python", "-c", WHERE, cwd=cwd)).resolve()


def test_two_clones_each_run_their_own_code(tmp_path):
    """Two clones on the machine's cache: each .venv/bin/python imports its own espnet_omni,
    also after the other clone ran install.sh again (this cache may hold an old editable
    install of some other checkout: it must not win either)."""
    venv = shared_venv()
    if venv is None:
        pytest.skip("this checkout has no .venv of tools/install.sh")
    cache = venv.parent
    if not (cache / f"venv-{key(ROOT)}/.espnet_omni_complete").is_file():
        pytest.skip(f"no finished venv for this requirements.txt in {cache} (would build 6.7 GB)")
    site = sorted(p.name for p in venv.glob("lib/python3.*/site-packages/*"))
    a, b = clone(tmp_path / "a"), clone(tmp_path / "b")
    away = tmp_path / "elsewhere"
    away.mkdir()
    install(a, cache)
    install(b, cache)
    assert imported_from(a, away) == a.resolve() / "espnet_omni/__init__.py"
    assert imported_from(b, away) == b.resolve() / "espnet_omni/__init__.py"
    install(a, cache)
    assert imported_from(b, away) == b.resolve() / "espnet_omni/__init__.py"
    assert imported_from(a, away) == a.resolve() / "espnet_omni/__init__.py"
    assert sorted(p.name for p in venv.glob("lib/python3.*/site-packages/*")) == site  # nothing installed there


def fake_shared_venv(cache: Path, checkout: Path) -> Path:
    """A tiny finished 'shared venv' for CHECKOUT's requirements.txt: no packages, but a
    console script, a non-Python tool, and two decoy espnet_omni: one installed, one an
    editable finder that setuptools would append to sys.meta_path."""
    venv = cache / f"venv-{key(checkout)}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    sp = Path(run(venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=cache))
    (sp / "espnet_omni").mkdir()
    (sp / "espnet_omni/__init__.py").write_text("")
    (sp / "decoy/espnet_omni").mkdir(parents=True)
    (sp / "decoy/espnet_omni/__init__.py").write_text("")
    (sp / "__editable___espnet_omni_finder.py").write_text(
        "import importlib.util, sys\n"
        "class F:\n"
        "    @classmethod\n"
        "    def find_spec(cls, name, path=None, target=None):\n"
        f"        if name == 'espnet_omni': return importlib.util.spec_from_file_location("
        f"name, {str(sp / 'decoy/espnet_omni/__init__.py')!r})\n"
        "def install():\n"
        "    sys.meta_path.append(F)\n")
    (sp / "__editable__.espnet_omni-0.1.0.pth").write_text(
        "import __editable___espnet_omni_finder; __editable___espnet_omni_finder.install()\n")
    (venv / "bin/hello").write_text(f"#!{venv}/bin/python\nimport sys\nprint(sys.prefix)\n")
    (venv / "bin/hello").chmod(0o755)
    (venv / "bin/tool").write_text("#!/bin/sh\necho tool\n")
    (venv / "bin/tool").chmod(0o755)
    (venv / ".espnet_omni_complete").touch()
    return venv


def test_checkout_venv_layout_migration_and_repointing(tmp_path):
    """On a throwaway shared venv: an old .venv symlink becomes the checkout's own venv (the
    shared one untouched), its code wins over what the shared venv has, the shared tools run
    with .venv/bin/python, a rerun changes nothing, a moved cache is followed, and a .venv we
    did not make is refused."""
    c = clone(tmp_path / "c")
    away = tmp_path / "elsewhere"
    away.mkdir()
    venv = fake_shared_venv(tmp_path / "cache", c)
    before = sorted(p.name for p in venv.rglob("*"))
    decoys = f"{WHERE}; import sys; print(sys.meta_path[-1])"
    assert run(venv / "bin/python", "-c", decoys, cwd=away).splitlines() == [  # the decoys work
        str(venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}/site-packages/espnet_omni/__init__.py"),
        "<class '__editable___espnet_omni_finder.F'>"]

    (c / ".venv").symlink_to(venv)
    assert "making .venv" in install(c, tmp_path / "cache")
    assert (c / ".venv").is_dir() and not (c / ".venv").is_symlink()
    assert imported_from(c, away) == c.resolve() / "espnet_omni/__init__.py"
    assert run(c / ".venv/bin/python", "-c", decoys, cwd=away).splitlines() == [  # the shared .pth ran
        str(c / "espnet_omni/__init__.py"), "<class '__editable___espnet_omni_finder.F'>"]
    assert Path(run(c / ".venv/bin/hello", cwd=away)).resolve() == (c / ".venv").resolve()
    assert run(c / ".venv/bin/tool", cwd=away) == "tool"
    assert sorted(p.name for p in venv.rglob("*")) == before

    stamp = (c / ".venv/.espnet_omni").stat().st_mtime_ns
    assert "making .venv" not in install(c, tmp_path / "cache")
    assert (c / ".venv/.espnet_omni").stat().st_mtime_ns == stamp

    moved = fake_shared_venv(tmp_path / "cache2", c)
    assert "making .venv" in install(c, tmp_path / "cache2")
    pth = (c / ".venv").glob("lib/python3.*/site-packages/01-espnet_omni-shared.pth")
    assert str(moved) in next(pth).read_text()
    assert imported_from(c, away) == c.resolve() / "espnet_omni/__init__.py"

    shutil.rmtree(c / ".venv")
    (c / ".venv").mkdir()
    assert "not made by tools/install.sh" in install(c, tmp_path / "cache", rc=1)
    assert not list(c.glob(".venv.new.*"))


def test_a_second_install_waits_for_the_one_building_the_shared_venv(tmp_path):
    """Two install.sh at once on a fresh machine (two clones' ./test.sh): the second waits for
    the builder's lock instead of deleting the venv the first is filling, then uses it."""
    import fcntl
    import time

    c = clone(tmp_path / "c")
    venv = fake_shared_venv(tmp_path / "cache", c)
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a builder is at work
        p = subprocess.Popen(["tools/install.sh", "--no-apt"], cwd=c, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "ESPNET_OMNI_CACHE": str(tmp_path / "cache")})
        time.sleep(3)
        assert p.poll() is None, p.stderr.read()  # still waiting
        assert not (c / ".venv").exists()
        fcntl.flock(lock, fcntl.LOCK_UN)
        _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "another tools/install.sh is building" in err and "building venv" not in err
    assert (venv / ".espnet_omni_complete").is_file()  # the builder's venv was not deleted
    assert imported_from(c, tmp_path) == c.resolve() / "espnet_omni/__init__.py"
