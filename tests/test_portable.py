"""The repository works wherever it is cloned: no tracked file names an absolute path of the
machine it was written on (a test reading such a path fails elsewhere with FileNotFoundError)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def _machine_paths() -> list[str]:
    """Absolute paths that exist only on this machine: where the checkout lives, its parent
    (other worktrees, shared folders beside it) and the development machine's work area."""
    paths = {str(ROOT) + "/", "/" + "work" + "/"}  # spelled apart so this file does not match
    if ROOT.parent != Path(ROOT.anchor):
        paths.add(str(ROOT.parent) + "/")
    return sorted(paths)


def test_no_tracked_file_names_an_absolute_path_of_this_machine():
    needles = [p.encode() for p in _machine_paths()]
    offenders = []
    for path in _tracked_files():
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        data = path.read_bytes()
        for needle in needles:
            if needle in data:
                line = data[: data.index(needle)].count(b"\n") + 1
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {needle.decode()}")
    assert offenders == []


def test_the_check_would_see_the_checkout_path():
    assert str(ROOT) + "/" in _machine_paths()
    assert all(p.startswith("/") and len(p) > 2 for p in _machine_paths())
