"""Package a fine-tuned bundle for hand-over: a model-zoo layout zip that ``python -m monai.bundle download`` reads.

The zip holds one top-level folder ``<bundle>/`` with ``configs/*``, ``docs/*``, ``LICENSE``, ``large_files.yml`` and
the run's weights: ``models/model.pt`` (full state_dict), or for LoRA / adapter / prompt runs exported with
``weights="adapter"`` the small ``models/adapter/`` folder plus the official base SAM2 checkpoint it needs, listed in
``large_files.yml`` (``python -m monai.bundle download_large_files`` fetches it). ``configs/metadata.json`` gets a new
version with its changelog entry, ``sam2tune`` in ``required_packages_version`` and ``eval_metrics`` from the run's
``eval/summary.json``.
"""

from __future__ import annotations

import copy
import importlib.metadata
import json
import logging
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from sam2tune.utils.atomic import atomic_write

logger = logging.getLogger(__name__)

WEIGHTS_CHOICES = ("auto", "full", "adapter")
# Folders / files of a bundle that travel; everything else (models/, outputs/, caches) stays behind.
_SHIPPED_DIRS = ("configs", "docs")
_SHIPPED_FILES = ("LICENSE", "large_files.yml")
# summary.json keys that describe the run, not the model.
_NOT_METRICS = {"seconds", "seconds_per_item", "per_class", "per_organ", "skipped"}
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


class BundleExportError(ValueError):
    """The bundle, checkpoint folder or evaluation summary cannot be exported as given (the message says why)."""


def sam2tune_version() -> str:
    """The installed sam2tune distribution's version (importlib.metadata), else the package's ``__version__``.

    Returns:
        A version string such as "0.1.0".
    """
    try:
        return importlib.metadata.version("sam2tune")
    except importlib.metadata.PackageNotFoundError:
        from sam2tune import __version__

        logger.warning("sam2tune is not installed as a distribution (pip install .): using __version__ %s", __version__)
        return __version__


def next_version(version: str) -> str:
    """The next patch version: "0.1.0" -> "0.1.1".

    Args:
        version: a MAJOR.MINOR.PATCH string.

    Returns:
        The version with PATCH + 1.
    """
    if not _VERSION.match(str(version)):
        raise BundleExportError(f"metadata.json version {version!r} is not MAJOR.MINOR.PATCH: pass --version.")
    major, minor, patch = (int(p) for p in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def eval_metrics_from_summary(summary_path: str | os.PathLike, declared: dict[str, Any] | None = None) -> dict:
    """Metric name -> value for metadata ``eval_metrics`` from an evaluation ``summary.json``.

    Every top-level number of the summary is taken (NaN becomes null) except timing / bookkeeping keys; the metrics
    metadata already declares (e.g. ``mean_dice``) come first, and one the summary lacks raises.

    Args:
        summary_path: ``<output_dir>/eval/summary.json`` written by an evaluating run.
        declared: the bundle's current ``eval_metrics`` (names to fill).

    Returns:
        The new ``eval_metrics`` dict.
    """
    path = Path(summary_path)
    if not path.is_file():
        raise BundleExportError(f"Evaluation summary not found: {path} "
                                "(written by `run evaluating` to <output_dir>/eval).")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BundleExportError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(summary, dict):
        raise BundleExportError(f"{path} holds a {type(summary).__name__}, expected a JSON object of metrics.")
    numbers = {
        k: (None if math.isnan(v) else v)
        for k, v in summary.items()
        if k not in _NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    missing = [k for k in (declared or {}) if k not in numbers]
    if missing:
        raise BundleExportError(
            f"{path} lacks {missing}, which configs/metadata.json eval_metrics declares: pass the summary of an "
            f"evaluation of this bundle (its numeric keys are {sorted(numbers)})."
        )
    ordered = {k: numbers[k] for k in (declared or {})}
    return ordered | {k: v for k, v in numbers.items() if k not in ordered}


def export_bundle(
    bundle: str | os.PathLike,
    ckpt_dir: str | os.PathLike,
    out: str | os.PathLike,
    eval_summary: str | os.PathLike | None = None,
    version: str | None = None,
    changelog: str | None = None,
    weights: str = "auto",
) -> Path:
    """Write ``<out>/<bundle>_v<version>.zip`` in the model-zoo layout (see the module docstring).

    Args:
        bundle: a bundle name (found with ``sam2tune.bundles.bundle_root``) or the path of a bundle folder.
        ckpt_dir: the run's checkpoint folder (``model.pt`` and, for lora/adapter/prompt runs, ``adapter/``).
        out: folder the zip is written to (created).
        eval_summary: the run's ``eval/summary.json``; fills ``eval_metrics``.
        version: the exported bundle's version (MAJOR.MINOR.PATCH, new to the changelog); default: next patch.
        changelog: the changelog entry; default: a line naming the weights, sam2tune version and metrics.
        weights: "full" ships ``models/model.pt``; "adapter" ships ``models/adapter/`` + the base checkpoint in
            ``large_files.yml``; "auto" = full when ``model.pt`` exists, else adapter.

    Returns:
        Path of the written zip.
    """
    for name, value in (("bundle", bundle), ("ckpt_dir", ckpt_dir), ("out", out), ("eval_summary", eval_summary),
                        ("version", version), ("changelog", changelog), ("weights", weights)):
        _refuse_expression(name, value)
    root = _bundle_folder(bundle)
    name = root.name
    meta_path = root / "configs" / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleExportError(f"Cannot read {meta_path}: {e}") from e
    for key in ("version", "changelog"):
        if key not in meta:
            raise BundleExportError(f"{meta_path} lacks {key!r} (the model zoo requires it).")
    if not (root / "LICENSE").is_file():
        raise BundleExportError(f"{root} has no LICENSE file: the model zoo requires one.")

    kind, files, base = _weights(Path(ckpt_dir), weights)
    new_version = next_version(meta["version"]) if version is None else str(version)
    if not _VERSION.match(new_version):
        raise BundleExportError(f"--version {new_version!r} is not MAJOR.MINOR.PATCH (e.g. 0.2.0).")
    if new_version in meta["changelog"]:
        raise BundleExportError(f"Version {new_version} is already in {meta_path} changelog: pass a new --version.")

    meta = copy.deepcopy(meta)
    meta["required_packages_version"] = dict(meta.get("required_packages_version") or {}) | {
        "sam2tune": sam2tune_version()
    }
    if eval_summary is not None:
        meta["eval_metrics"] = eval_metrics_from_summary(eval_summary, meta.get("eval_metrics"))
    entry = changelog or _default_changelog(kind, base, meta.get("eval_metrics") if eval_summary else None)
    meta["version"] = new_version
    meta["changelog"] = {new_version: entry} | dict(meta["changelog"])  # newest first, as the zoo writes them

    members: dict[str, Path | bytes] = {}
    for sub in _SHIPPED_DIRS:
        for path in sorted((root / sub).rglob("*")) if (root / sub).is_dir() else []:
            if path.is_file() and not path.is_symlink() and not _skip(path):
                members[path.relative_to(root).as_posix()] = path
    for fname in _SHIPPED_FILES:
        if (root / fname).is_file():
            members[fname] = root / fname
    members["configs/metadata.json"] = (json.dumps(meta, indent=2) + "\n").encode()
    if base is not None:
        members["large_files.yml"] = _large_files_yml(base).encode()
    members |= files

    zip_path = Path(out) / f"{name}_v{new_version}.zip"
    _write_zip(zip_path, name, members)
    logger.info("Exported bundle %s v%s (%s weights, %d files) -> %s", name, new_version, kind, len(members), zip_path)
    return zip_path


# ---- helpers ---------------------------------------------------------------------------------------------------------
def _refuse_expression(name: str, value: Any) -> None:
    if isinstance(value, str) and value[:1] in ("$", "@", "%"):
        raise BundleExportError(f"--{name} {value!r}: values starting with $, @ or % are refused (no expressions).")


def _bundle_folder(bundle: str | os.PathLike) -> Path:
    path = Path(bundle)
    if (path / "configs" / "metadata.json").is_file():
        return path.resolve()
    if isinstance(bundle, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", bundle) and bundle not in (".", ".."):
        from sam2tune.bundles import bundle_root

        try:
            root = Path(bundle_root(bundle))
        except FileNotFoundError as e:
            raise BundleExportError(str(e)) from e
        if (root / "configs" / "metadata.json").is_file():
            return root.resolve()
        raise BundleExportError(f"Bundle {bundle!r} at {root} has no configs/metadata.json.")
    raise BundleExportError(f"--bundle {bundle!r} is neither a bundle folder (with configs/metadata.json) nor a name.")


def _weights(ckpt_dir: Path, weights: str) -> tuple[str, dict[str, Path], dict | None]:
    """(kind, zip members, base checkpoint entry or None) for the run's weights in `ckpt_dir`."""
    if weights not in WEIGHTS_CHOICES:
        raise BundleExportError(f"--weights {weights!r}: choose one of {', '.join(WEIGHTS_CHOICES)}.")
    if not ckpt_dir.is_dir():
        raise BundleExportError(f"--ckpt_dir {ckpt_dir} is not a folder (the run's ckpt_dir, holding model.pt).")
    model_pt, adapter = ckpt_dir / "model.pt", ckpt_dir / "adapter"
    kind = weights if weights != "auto" else ("full" if model_pt.is_file() else "adapter")
    if kind == "full":
        if not model_pt.is_file():
            raise BundleExportError(f"{model_pt} not found: train the bundle first, or pass --weights adapter.")
        _check_model_pt(model_pt)
        return kind, {"models/model.pt": model_pt}, None
    from sam2tune.finetune.io import CONFIG_NAME, WEIGHTS_NAME, read_adapter
    from sam2tune.networks.build import OFFICIAL_URLS, VARIANTS

    try:
        meta, _ = read_adapter(str(adapter))
    except (FileNotFoundError, ValueError) as e:
        raise BundleExportError(f"{e} (needed for --weights adapter)") from e
    variant = meta["variant"]
    if variant not in VARIANTS:
        raise BundleExportError(f"{adapter / CONFIG_NAME} names an unknown variant {variant!r}.")
    release = str(meta.get("version", "2.1"))
    url = OFFICIAL_URLS[(release, variant)]
    base = {"path": f"models/{url.rsplit('/', 1)[-1]}", "url": url, "variant": variant}
    files = {f"models/adapter/{n}": adapter / n for n in (CONFIG_NAME, WEIGHTS_NAME)}
    return kind, files, base


def _check_model_pt(path: Path) -> None:
    from sam2tune.networks import is_sam2tune_state_dict

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise BundleExportError(f"{path} cannot be read with torch.load(weights_only=True): {e}") from e
    if not isinstance(state, dict) or not state or not is_sam2tune_state_dict(state):
        raise BundleExportError(
            f"{path} is not a sam2tune SAM2Segmenter state_dict (keys 'sam.*'): export the model.pt a training run "
            f"wrote to its ckpt_dir."
        )


def _default_changelog(kind: str, base: dict | None, metrics: dict | None) -> str:
    what = (
        "fine-tuned weights (models/model.pt)"
        if base is None
        else f"fine-tuned adapter (models/adapter/) over the official SAM2 {base['variant']} checkpoint "
        f"({base['path']})"
    )
    scores = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in (metrics or {}).items())
    return f"{what}, exported with sam2tune {sam2tune_version()}" + (f"; evaluation: {scores}" if scores else "")


def _large_files_yml(base: dict) -> str:
    return (
        "# The official SAM2 checkpoint the adapter in models/adapter/ was trained on (Meta, Apache-2.0). "
        "Fetch it with\n"
        "#   python -m monai.bundle download_large_files --bundle_path <this bundle>\n"
        "# Meta publishes no checksum for it, so hash_val is empty (download_large_files then only warns).\n"
        "large_files:\n"
        f'  - path: "{base["path"]}"\n'
        f'    url: "{base["url"]}"\n'
        '    hash_type: "sha256"\n'
        '    hash_val: ""\n'
    )


def _skip(path: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in path.parts[-3:])


def _write_zip(zip_path: Path, name: str, members: dict[str, Path | bytes]) -> None:
    """Write the zip (every member under `name/`) atomically (sam2tune.utils.atomic.atomic_write)."""

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for arcname, src in sorted(members.items()):
                target = f"{name}/{arcname}"
                if isinstance(src, bytes):
                    zf.writestr(target, src)
                else:
                    # Weights are incompressible: store them, deflate the text.
                    kind = zipfile.ZIP_STORED if src.suffix in (".pt", ".safetensors") else zipfile.ZIP_DEFLATED
                    zf.write(src, target, compress_type=kind)

    atomic_write(str(zip_path), write)
