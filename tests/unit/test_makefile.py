"""The Makefile's bootstrap: uv comes from PATH, from the Python in use, or from a venv of its
own (.tools), never from `pip install` into a Python that may be externally managed (PEP 668:
current Debian, Ubuntu and Homebrew Pythons refuse it)."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BARE_PATH = "/usr/bin:/bin"  # no uv there (pyenv's shims and ~/.local/bin are left out)


def _make(cwd: Path, *args: str, path: str = BARE_PATH) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=cwd,
        env={"PATH": path, "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_without_uv_anywhere_it_is_installed_in_a_venv_of_its_own(tmp_path: Path) -> None:
    assert shutil.which("uv", path=BARE_PATH) is None
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    python = tmp_path / "python-without-uv"
    venv.create(python, with_pip=False)  # a Python with no uv module and no pip of its own
    interpreter = f"PYTHON={python / 'bin' / 'python'}"

    planned = _make(tmp_path, "-n", "install", interpreter)
    assert "-m venv .tools" in planned and ".tools/bin/python -m pip install" in planned
    assert f"{python}/bin/python -m pip" not in planned  # nothing goes into the Python itself

    _make(tmp_path, ".tools/bin/uv", interpreter)
    version = subprocess.run([tmp_path / ".tools/bin/uv", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("uv ")
    assert f"{tmp_path}/.tools/bin/uv sync --all-packages --frozen" in _make(tmp_path, "-n", "install", interpreter)


def test_a_uv_on_the_path_is_used_as_it_is(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text("#!/bin/sh\necho uv 0.9.0\n")
    (bin_dir / "uv").chmod(0o755)
    planned = _make(tmp_path, "-n", "install", path=f"{bin_dir}:{BARE_PATH}")
    assert planned.strip() == f"{bin_dir}/uv sync --all-packages --frozen --quiet"
