"""The repository passes its own ruff configuration (pyproject.toml): line length 120 everywhere, Google-style
docstrings (Args / Returns / Raises) in networks, finetune, prompts and engines, import order, pyupgrade."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_passes():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in requirements-dev.txt: `make install`)")
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"`ruff check .` found problems (fix them, or `ruff check --fix .`):\n" \
                                   f"{result.stdout[-4000:]}{result.stderr[-2000:]}"
