"""scripts/<tool>.py are thin wrappers over sam2tune.tools, whose mains are also [project.scripts] entry points."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WRAPPERS = sorted((REPO / "scripts").glob("*.py"))


def _entry_points() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("path", WRAPPERS, ids=lambda p: p.name)
def test_script_is_a_thin_wrapper_over_the_package(path):
    """No sys.path hack, a few lines, and its main is the package tool's own (imported without running it)."""
    text = path.read_text()
    assert "sys.path" not in text
    assert len([line for line in text.splitlines() if line.strip()]) <= 5, f"{path.name}: logic belongs in sam2tune"
    spec = importlib.util.spec_from_file_location(f"wrapper_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the __main__ guard: loading runs nothing
    assert module.main is importlib.import_module(f"sam2tune.tools.{path.stem}").main


def test_entry_points_name_existing_mains():
    points = _entry_points()
    assert {"sam2tune-phantoms", "sam2tune-demo", "sam2tune-benchmark", "sam2tune-compare", "sam2tune-ablation",
            "sam2tune-interactive-table"} <= set(points)
    for name, target in points.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), name


def test_phantoms_entry_point_writes_the_layout(tmp_path):
    """The console script pip installs (`pip install -e .`) runs the tool from any directory."""
    exe = Path(sys.executable).parent / "sam2tune-phantoms"
    if not exe.is_file():
        pytest.fail(f"{exe} is missing: reinstall sam2tune (pip install --no-deps -e .) after editing pyproject.toml")
    proc = subprocess.run([str(exe), "refuge", "--out", str(tmp_path / "p"), "--cases", "2", "--size", "48"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "p" / "REFUGE" / "Training-400").iterdir()) == ["T0001"]
