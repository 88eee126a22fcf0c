"""Where bundles live: resolve a bundle's root folder and list the bundles shipped with sam2tune.

``bundle_root(name)`` is what every bundle config writes as ``"bundle_root": "$sam2tune.bundles.bundle_root('<b>')"``.
It resolves, in this order (the first that applies wins; nothing else is tried, and never the checkout sam2tune
happens to be installed from):

1. ``--bundle_root DIR`` on the command line (or ``bundle_root=`` given to a workflow): MONAI replaces the
   expression, so this function never runs.
2. The bundle being run: inside a MONAI ``ConfigWorkflow`` (``python -m monai.bundle run ... --config_file F``,
   ``monai.bundle.create_workflow``, the MONAI Label app's train task), the folder holding the first config file's
   ``configs/`` folder, wherever it was copied or downloaded to. A workflow whose first config file is not inside a
   bundle's ``configs/`` folder is refused with the fix (list the bundle's own config first, or pass --bundle_root).
3. ``$SAM2TUNE_BUNDLES/<name>`` when the environment variable is set.
4. ``./bundles/<name>`` under the current directory (a sam2tune checkout you run from), or the current directory
   itself when it is the bundle ``<name>``.
5. Otherwise ``FileNotFoundError`` naming these options.

``run_workflow`` / ``open_workflow`` (``sam2tune.bundles.workflow``) run a bundle's ``ConfigWorkflow`` in this process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sam2tune.bundles.workflow import available_configs, bundle_config_files, bundle_folder, open_workflow, run_workflow

__all__ = [
    "ENV_VAR",
    "BundleRootError",
    "available_configs",
    "bundle_config_files",
    "bundle_folder",
    "bundle_root",
    "bundles_dir",
    "is_bundle",
    "list_bundles",
    "open_workflow",
    "run_workflow",
    "running_bundle_root",
]

ENV_VAR = "SAM2TUNE_BUNDLES"
# Files whose presence under <folder>/configs/ makes <folder> a bundle.
_BUNDLE_MARKERS = ("metadata.json", "train.json", "inference.json")


class BundleRootError(FileNotFoundError):
    """A bundle's root folder cannot be resolved (see ``bundle_root``)."""


def bundles_dir() -> Path:
    """The folder holding the bundles: ``$SAM2TUNE_BUNDLES``, else ``./bundles`` under the current directory.

    Returns:
        The folder (it may not exist: ``list_bundles`` is then empty).
    """
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path.cwd() / "bundles"


def is_bundle(folder: str | os.PathLike) -> bool:
    """True when `folder` holds ``configs/metadata.json``, ``configs/train.json`` or ``configs/inference.json``.

    Args:
        folder: a candidate bundle folder.

    Returns:
        Whether it looks like a bundle.
    """
    configs = Path(folder) / "configs"
    return any((configs / m).is_file() for m in _BUNDLE_MARKERS)


def running_bundle_root() -> Path | None:
    """Root of the bundle the innermost running MONAI ``ConfigWorkflow`` was built from (None outside a workflow).

    ``ConfigWorkflow`` keeps the folder of its first config file (``config_root_path``); the bundle root is its parent
    when that folder is ``configs/`` (MONAI's own rule when it puts the bundle on ``sys.path`` in ``run``).

    Returns:
        The absolute bundle folder, or None when no ConfigWorkflow is on the call stack.

    Raises:
        BundleRootError: a workflow is running but its first config file is not inside a bundle's ``configs/``.
    """
    from monai.bundle import ConfigWorkflow

    frame = sys._getframe(1)
    while frame is not None:
        wf = frame.f_locals.get("self")
        if isinstance(wf, ConfigWorkflow):
            config_root = Path(wf.config_root_path)
            root = (config_root.parent if config_root.name == "configs" else config_root).resolve()
            if not is_bundle(root):
                raise BundleRootError(
                    f"The running bundle workflow's first config file is in {config_root.resolve()}, which is not a "
                    f"bundle's configs/ folder (no configs/{{metadata,train,inference}}.json under {root}): list the "
                    f"bundle's own config first in --config_file, or pass --bundle_root DIR."
                )
            return root
        frame = frame.f_back
    return None


def bundle_root(name: str) -> str:
    """Absolute path of bundle `name`, resolved as the module docstring says (the running bundle first).

    Args:
        name: the bundle's name (its folder name in ``bundles/``), e.g. ``optic_cup_fundus_sam2``.

    Returns:
        The bundle folder (absolute).

    Raises:
        BundleRootError: no rule applies; the message names the fixes.
    """
    running = running_bundle_root()
    if running is not None:
        return str(running)
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env) / name
        if is_bundle(root):
            return str(root.resolve())
        raise BundleRootError(f"Bundle {name!r} not found at {root} (${ENV_VAR}={env}): no configs/ with "
                              f"metadata.json, train.json or inference.json there. Fix {ENV_VAR} or pass "
                              "--bundle_root.")
    cwd = Path.cwd()
    for root in (cwd / "bundles" / name, cwd):
        if (root == cwd and cwd.name != name) or not is_bundle(root):
            continue
        return str(root.resolve())
    raise BundleRootError(
        f"Bundle {name!r} not found: not run through `python -m monai.bundle run --config_file <bundle>/configs/...`, "
        f"{ENV_VAR} is not set, and neither ./bundles/{name} nor the current directory ({cwd}) is that bundle. "
        f"Pass --bundle_root DIR, run from the folder holding bundles/, or set {ENV_VAR} to it."
    )


def list_bundles() -> list[str]:
    """Names of all bundles (folders with configs/train.json) in ``bundles_dir()``, sorted.

    Returns:
        The bundle names.
    """
    d = bundles_dir()
    return sorted(p.name for p in d.iterdir() if (p / "configs" / "train.json").is_file()) if d.is_dir() else []
