"""Where bundles live: resolve a bundle's root folder and list the bundles shipped with sam2tune."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def bundles_dir() -> Path:
    """The `bundles/` folder: $SAM2TUNE_BUNDLES, else ./bundles when run from a checkout, else the package's checkout."""
    env = os.environ.get("SAM2TUNE_BUNDLES")
    if env:
        return Path(env)
    cwd = Path.cwd() / "bundles"
    return cwd if cwd.is_dir() else _REPO_BUNDLES


def bundle_root(name: str) -> str:
    """Absolute path of bundle `name` (a folder holding configs/train.json)."""
    root = bundles_dir() / name
    if not (root / "configs" / "train.json").is_file():
        raise FileNotFoundError(
            f"Bundle {name!r} not found at {root} (no configs/train.json). Run from the sam2tune checkout, "
            f"or set SAM2TUNE_BUNDLES to the folder holding the bundles, or pass --bundle_root."
        )
    return str(root)


def list_bundles() -> list[str]:
    """Names of all bundles (folders with configs/train.json), sorted."""
    d = bundles_dir()
    return sorted(p.name for p in d.iterdir() if (p / "configs" / "train.json").is_file()) if d.is_dir() else []
