"""train_baseline.py --distributed under torchrun (2 CPU workers, gloo): DDP training, then rank 0 evaluates.

The bundle's multi_gpu_train.json finalize destroys the process group; the evaluation that follows must not try to
all_gather its metrics through it (ignite caches the distributed context it saw during training).
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def test_torchrun_two_workers_train_then_rank0_evaluates(tmp_path):
    """One tiny epoch of the ResNet U-Net on 2 gloo ranks, then the bundle's evaluation on the test split."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this build")
    from sam2tune.data.phantoms import write_phantoms
    from sam2tune.data.refuge import refuge_datalist

    # 12 cases -> 7 train / 2 val / 3 test: each DistributedSampler needs at least one item per rank
    data = write_phantoms("refuge", str(tmp_path / "phantoms"), cases=12, seed=0)["root"]
    n_test = len(refuge_datalist(data, "test"))
    out = tmp_path / "dist"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}  # CPU + gloo even on a GPU host
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "scripts/train_baseline.py", "--model", "resnet", "--bundle", "optic_cup_fundus_sam2",
           "--dataset_dir", str(data), "--out", str(out), "--tiny", "--max_epochs", "1", "--distributed"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    stats = json.loads((out / "run_stats.json").read_text())
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert stats["world_size"] == 2 and stats["model"] == "resnet"
    assert summary["n"] == stats["n_test"] == n_test, "rank 0 alone must score the whole test split"
    assert stats["mean_dice"] == pytest.approx(summary["mean_dice"])
    with open(out / "eval" / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["id"] for r in rows) == sorted(i["id"] for i in refuge_datalist(data, "test"))
    dice = [float(r["dice"]) for r in rows]
    assert all(math.isfinite(d) for d in dice) and all(int(r["gt_pixels"]) > 0 for r in rows)
    assert summary["mean_dice"] == pytest.approx(sum(dice) / len(dice)), "summary must be the mean over test cases"
    assert len(json.loads((out / "training_history.json").read_text())) == 1
    weights = torch.load(out / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in weights), "the exported model must be the unwrapped network"
    assert "mean_dice" in proc.stdout
