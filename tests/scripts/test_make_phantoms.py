"""scripts/make_phantoms.py: the public command writes the exact layout; unknown/unavailable tasks fail clearly."""

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from sam2tune.data.phantoms import PHANTOM_WRITERS, get_phantom_writer, write_phantoms

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "make_phantoms.py"


def run_script(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the script must find sam2tune by itself
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture()
def script_main():
    spec = importlib.util.spec_from_file_location("make_phantoms_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_refuge_subprocess_writes_exact_layout(tmp_path):
    out = tmp_path / "phantoms"
    res = run_script("refuge", "--out", str(out), "--cases", "4", "--seed", "3", "--size", "48", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Wrote refuge phantoms" in res.stdout and "Training-400" in res.stdout
    root = out / "REFUGE"
    assert sorted(os.listdir(root / "Training-400")) == ["T0001", "T0002"]
    assert sorted(os.listdir(root / "Test-400")) == ["V0001", "V0002"]
    files = sorted(os.listdir(root / "Test-400" / "V0002"))
    assert "V0002_cropped.jpg" in files
    assert [f for f in files if "_seg_cup_" in f] == [f"V0002_seg_cup_{r}_cropped.jpg" for r in range(1, 8)]


def test_unknown_task_subprocess(tmp_path):
    res = run_script("mnist", "--out", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 2 and "invalid choice: 'mnist'" in res.stderr


def test_registry_errors(monkeypatch):
    with pytest.raises(ValueError, match="Unknown phantom task 'mnist'; choose one of: refuge"):
        get_phantom_writer("mnist")
    monkeypatch.setitem(PHANTOM_WRITERS, "fake", "sam2tune.data.phantoms.no_such_module:write_fake_phantoms")
    with pytest.raises(NotImplementedError, match="phantom writer for fake is not available"):
        get_phantom_writer("fake")
    monkeypatch.setitem(PHANTOM_WRITERS, "fake", "sam2tune.data.phantoms:write_nothing")
    with pytest.raises(NotImplementedError, match="has no function write_nothing"):
        get_phantom_writer("fake")


def test_unavailable_writer_via_main(monkeypatch, tmp_path, capsys, script_main):
    monkeypatch.setitem(PHANTOM_WRITERS, "fake", "sam2tune.data.phantoms.no_such_module:write_fake_phantoms")
    assert script_main(["fake", "--out", str(tmp_path)]) == 1
    assert "phantom writer for fake is not available" in capsys.readouterr().err


def test_size_only_for_writers_that_take_it(monkeypatch, tmp_path, capsys, script_main):
    module = types.ModuleType("fake_phantom_module")
    module.write_fake_phantoms = lambda out, cases=2, seed=0: {"out": out, "cases": cases, "seed": seed}
    monkeypatch.setitem(sys.modules, "fake_phantom_module", module)
    monkeypatch.setitem(PHANTOM_WRITERS, "fake", "fake_phantom_module:write_fake_phantoms")
    assert script_main(["fake", "--out", str(tmp_path), "--cases", "5", "--seed", "9"]) == 0
    assert '"cases": 5' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script_main(["fake", "--out", str(tmp_path), "--size", "64"])
    assert "takes no --size" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script_main(["refuge", "--out", str(tmp_path), "--size", "64xx"])


def test_write_phantoms_dispatch(tmp_path):
    summary = write_phantoms("refuge", str(tmp_path), cases=2, seed=0, size=(40, 56))
    assert summary["task"] == "refuge" and summary["image_shape"] == [40, 56]
