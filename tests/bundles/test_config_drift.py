"""The keys train.json and inference.json share mean the same thing: inference sees what training and evaluation saw.

A setting (a value that is not a component: image size, variant, HU window, crop, slice stack, classes, ...) defined
in both files must have the same value, and inference's network_def must build the same network as training's,
apart from what only concerns training (the base checkpoint, dropout for MC sampling, the random-init warning).
A deliberate difference needs a key name of its own, listed in DIFFERENT_ON_PURPOSE with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.name for p in (REPO_ROOT / "bundles").iterdir() if (p / "configs" / "inference.json").is_file())

# Keys whose meaning differs by file on purpose: the file's own plumbing, not a property of the data or network.
DIFFERENT_ON_PURPOSE = {
    "imports": "each file imports what its own expressions use",
    "run": "training runs the trainer, inference its pipeline",
    "network": "training wraps network_def in the fine-tuning strategy; inference loads fine-tuned weights",
    "output_dir": "inference writes under outputs/inference so it never overwrites a training run's reports",
}
# network_def arguments that only concern training.
TRAINING_ONLY_NETWORK_ARGS = {"pretrained_checkpoint", "dropout", "warn_random_init"}


def _configs(bundle: str) -> tuple[dict, dict]:
    folder = REPO_ROOT / "bundles" / bundle / "configs"
    return json.loads((folder / "train.json").read_text()), json.loads((folder / "inference.json").read_text())


def _segmenter(network_def: dict) -> dict:
    # a wrapped network_def (abdomen: BoxPromptedSegmenter for the zoo's checks) holds the SAM2Segmenter inside
    return network_def.get("segmenter", network_def)


def _settings(train: dict, infer: dict) -> list[str]:
    """Top-level keys of both files holding settings; components (dicts: inferer, preprocessing, ...) are each
    file's own pipeline, and network_def is compared argument by argument."""
    both = set(train) & set(infer) - set(DIFFERENT_ON_PURPOSE) - {"network_def"}
    return sorted(k for k in both if not isinstance(train[k], dict) and not isinstance(infer[k], dict))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_shared_keys_agree(bundle):
    train, infer = _configs(bundle)
    shared = _settings(train, infer)
    drift = {k: (train[k], infer[k]) for k in shared if train[k] != infer[k]}
    assert not drift, (f"{bundle}: train.json and inference.json disagree on {drift}; make them equal, or give the "
                       "inference value a key name of its own")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_builds_the_trained_network(bundle):
    train, infer = _configs(bundle)
    t, i = _segmenter(train["network_def"]), _segmenter(infer["network_def"])
    keys = (set(t) | set(i)) - TRAINING_ONLY_NETWORK_ARGS
    drift = {k: (t.get(k), i.get(k)) for k in sorted(keys) if t.get(k) != i.get(k)}
    assert not drift, f"{bundle}: inference.json's network_def differs from train.json's in {drift}"


def test_the_check_sees_a_drift(tmp_path):
    """The comparison itself catches the lung bundle's former adjacent_slices 1 (train) vs 2 (inference)."""
    train, infer = _configs("lung_nodule_ct_sam2")
    infer = {**infer, "adjacent_slices": train["adjacent_slices"] + 1}
    shared = _settings(train, infer)
    assert {k for k in shared if train[k] != infer[k]} == {"adjacent_slices"}
