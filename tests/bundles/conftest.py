"""Shared helpers for bundle tests: run a bundle's ConfigWorkflow in-process at a tiny CPU setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from monai.bundle import ConfigWorkflow

from sam2tune import bundles

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
# The CPU-tiny overrides every bundle must accept (contract keys only).
TINY = {"sam2_variant": "tiny", "image_size": 64, "num_workers": 0, "amp": False, "batch_size": 4,
        "correction_rounds": 2}


def config_path(bundle: str, name: str) -> str:
    """Path of bundles/<bundle>/configs/<name>.json."""
    return str(BUNDLES / bundle / "configs" / f"{name}.json")


def run_workflow(bundle: str, files: list[str], run_id: str = "run", **kwargs) -> ConfigWorkflow:
    """``sam2tune.bundles.run_workflow`` over this checkout's bundles/<bundle> (config names, e.g. ["train"])."""
    return bundles.run_workflow(BUNDLES / bundle, files, run_id, **kwargs)


def open_workflow(bundle: str, files: list[str], run_id: str = "run", **kwargs):
    """``sam2tune.bundles.open_workflow`` over this checkout's bundles/<bundle>: finalizes when the block ends."""
    return bundles.open_workflow(BUNDLES / bundle, files, run_id, **kwargs)


def run_cli(args: list[str], timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python <args>` from the repo root (the contract commands verbatim) and return the finished process."""
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(args)}\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-5000:]}")
    return proc


# Fixtures expose the helpers to test modules (pytest's importlib mode has no package-relative imports).
@pytest.fixture(scope="session")
def bundle_tools():
    """Namespace with run_workflow, open_workflow, run_cli, config_path, TINY and REPO for bundle tests."""
    from types import SimpleNamespace

    return SimpleNamespace(error_chain=error_chain, run_workflow=run_workflow, open_workflow=open_workflow,
                           run_cli=run_cli, config_path=config_path, TINY=dict(TINY), REPO=REPO)


def error_chain(exc: BaseException) -> str:
    """All messages of an exception and its causes (MONAI wraps config errors in 'Failed to evaluate ...')."""
    parts = []
    while exc is not None:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)
