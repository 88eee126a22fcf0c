"""Run a bundle's MONAI ``ConfigWorkflow`` in this process: the one build -> initialize -> run -> finalize sequence.

``run_workflow(bundle, ["train", "evaluate"], dataset_dir=..., max_epochs=1)`` is what
``python -m monai.bundle run --config_file "['<b>/configs/train.json','<b>/configs/evaluate.json']" --dataset_dir ...
--max_epochs 1`` does, for Python callers (tools, baselines, the MONAI Label train task, tests) that want the workflow
object afterwards (its parser holds the network, the trainer, the resolved keys).

- ``run_workflow(..., run=False)``: built and initialized, not run, not finalized (inspect ``wf.parser``).
- ``open_workflow(...)``: the same as a context manager that finalizes when the block ends, for callers that inspect
  or attach handlers before they call ``wf.run()`` themselves.

MONAI's ``initialize`` resets the parser and runs the config's ``initialize`` expression (seeding, process group), so
objects taken from ``wf.parser`` before it would be rebuilt: take them afterwards, as these functions allow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # monai.bundle loads ignite: imported when a workflow is built, not with sam2tune.bundles
    from monai.bundle import ConfigWorkflow

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def bundle_folder(bundle: str | os.PathLike) -> Path:
    """The folder of `bundle`: a path is taken as given; a bare name is resolved by ``bundle_root``.

    Args:
        bundle: a bundle folder (a ``PathLike``, or a string holding a path separator, ``.`` or ``..``), or a bundle
            name such as ``optic_cup_fundus_sam2``.

    Returns:
        The bundle folder.

    Raises:
        FileNotFoundError: a folder was given that does not exist.
        BundleRootError: a name was given that ``bundle_root`` cannot resolve (its message names the fixes).
    """
    text = os.fspath(bundle)
    if isinstance(bundle, os.PathLike) or "/" in text or os.sep in text or text in (".", ".."):
        folder = Path(text)
        if not folder.is_dir():
            raise FileNotFoundError(f"Bundle folder {folder} does not exist: pass a bundle folder (holding configs/) "
                                    "or a bundle name.")
        return folder
    from sam2tune.bundles import bundle_root  # the package's __init__ imports this module

    return Path(bundle_root(text))


def available_configs(folder: str | os.PathLike) -> list[str]:
    """Names of the config files in ``<folder>/configs`` (``metadata`` included), sorted.

    Args:
        folder: a bundle folder.

    Returns:
        The file names without their suffix, e.g. ``["evaluate", "inference", "metadata", "train"]``.
    """
    configs = Path(folder) / "configs"
    if not configs.is_dir():
        return []
    return sorted(p.stem for p in configs.iterdir() if p.is_file() and p.suffix in CONFIG_SUFFIXES)


def bundle_config_files(bundle: str | os.PathLike, config_files: Sequence[str | os.PathLike]) -> list[str]:
    """Config names or paths -> existing config file paths of `bundle`.

    Args:
        bundle: a bundle folder or name (see ``bundle_folder``).
        config_files: names such as ``"train"`` (read as ``<bundle>/configs/train.json``) or paths to config files
            (anything ending in .json / .yaml / .yml or holding a path separator), in the order MONAI merges them.

    Returns:
        The config file paths, as strings.

    Raises:
        ValueError: `config_files` is empty or a single string instead of a list.
        FileNotFoundError: a config file does not exist; the message names it and the bundle's available configs.
    """
    if isinstance(config_files, str | os.PathLike) or not config_files:
        raise ValueError(f"config_files must be a non-empty list of config names or paths, e.g. ['train'], got "
                         f"{config_files!r}.")
    folder = bundle_folder(bundle)
    paths = []
    for item in config_files:
        text = os.fspath(item)
        is_path = isinstance(item, os.PathLike) or text.endswith(CONFIG_SUFFIXES) or "/" in text or os.sep in text
        path = Path(text) if is_path else folder / "configs" / f"{text}.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"Config file {path} not found (bundle {folder}, config {text!r}); the bundle's configs are: "
                f"{', '.join(available_configs(folder)) or 'none (no configs/ folder)'}."
            )
        paths.append(str(path))
    return paths


def run_workflow(
    bundle: str | os.PathLike,
    config_files: Sequence[str | os.PathLike],
    /,
    run_id: str = "run",
    *,
    run: bool = True,
    meta_file: str | os.PathLike | None = None,
    workflow_type: str | None = None,
    logging_file: str | os.PathLike | bool | None = False,
    **overrides: Any,
) -> ConfigWorkflow:
    """Build a bundle's ``ConfigWorkflow``, initialize it and (by default) run and finalize it, in this process.

    Args:
        bundle: a bundle folder or name (a name is resolved by ``sam2tune.bundles.bundle_root``).
        config_files: config names (``"train"``, ``"evaluate"``, ...) or paths, merged in this order; the first
            one's folder is the workflow's config root (MONAI's rule: it names ``bundle_root``).
        run_id: the config id to run (``"run"``; the bundles also name it ``"training"`` / ``"evaluating"`` /
            ``"inferring"``).
        run: False: return the initialized workflow without running or finalizing it (to read ``wf.parser``);
            use ``open_workflow`` instead when you run it yourself.
        meta_file: metadata file (default: ``<bundle>/configs/metadata.json`` when it exists).
        workflow_type: MONAI's workflow type for its property checks (``"train"``, ``"inference"``); None checks
            none, as ``monai.bundle run`` does for a run id it does not know.
        logging_file: a logging.conf to apply; False (default): leave the process's logging as it is; None: the
            first config's folder's logging.conf when it exists (MONAI's default).
        **overrides: config ids -> values, as ``python -m monai.bundle run --<id> <value>`` sets them (``#`` paths
            such as ``train#dataset#data`` included).

    Returns:
        The workflow: run and finalized, or only initialized when `run` is False.

    Raises:
        FileNotFoundError: a config file is missing (the message lists the bundle's configs), or the metadata or
            logging file is.
        BundleRootError: `bundle` is a name that cannot be resolved.
    """
    if not run:
        return _initialized(bundle, config_files, run_id, meta_file, workflow_type, logging_file, overrides)
    with open_workflow(bundle, config_files, run_id, meta_file=meta_file, workflow_type=workflow_type,
                       logging_file=logging_file, **overrides) as wf:
        wf.run()
    return wf


@contextmanager
def open_workflow(
    bundle: str | os.PathLike,
    config_files: Sequence[str | os.PathLike],
    /,
    run_id: str = "run",
    *,
    meta_file: str | os.PathLike | None = None,
    workflow_type: str | None = None,
    logging_file: str | os.PathLike | bool | None = False,
    **overrides: Any,
) -> Iterator[ConfigWorkflow]:
    """``run_workflow(..., run=False)`` as a context manager that finalizes the workflow when the block ends.

    Call ``wf.run()`` inside the block (after attaching handlers or reading ``wf.parser``). When the block raises,
    the workflow is not finalized (as ``python -m monai.bundle run`` leaves a failed run), so a failed distributed
    run does not tear its process group down under ranks still inside a collective.

    Args:
        bundle: a bundle folder or name (see ``run_workflow``).
        config_files: config names or paths (see ``run_workflow``).
        run_id: the config id ``wf.run()`` runs.
        meta_file: metadata file (default: the bundle's ``configs/metadata.json`` when it exists).
        workflow_type: MONAI's workflow type for its property checks (None: none).
        logging_file: a logging.conf to apply, False (default: none) or None (MONAI's default).
        **overrides: config ids -> values.

    Yields:
        The initialized workflow.
    """
    wf = _initialized(bundle, config_files, run_id, meta_file, workflow_type, logging_file, overrides)
    yield wf
    wf.finalize()


def _initialized(bundle: str | os.PathLike, config_files: Sequence[str | os.PathLike], run_id: str,
                 meta_file: str | os.PathLike | None, workflow_type: str | None,
                 logging_file: str | os.PathLike | bool | None, overrides: dict[str, Any]) -> ConfigWorkflow:
    """Build and initialize the workflow (the arguments of ``run_workflow``)."""
    from monai.bundle import ConfigWorkflow

    if logging_file is True:
        raise ValueError("logging_file must be a logging.conf path, False (none) or None (MONAI's default), not True.")
    folder = bundle_folder(bundle)
    files = bundle_config_files(folder, config_files)
    if meta_file is None:
        default = folder / "configs" / "metadata.json"
        meta_file = str(default) if default.is_file() else None
    if meta_file is not None and not Path(meta_file).is_file():
        raise FileNotFoundError(f"Metadata file {meta_file} not found: pass an existing meta_file or None.")
    if not (logging_file is None or isinstance(logging_file, bool)):
        logging_file = os.fspath(logging_file)
    wf = ConfigWorkflow(
        config_file=files,
        meta_file=None if meta_file is None else os.fspath(meta_file),
        logging_file=logging_file,
        run_id=run_id,
        workflow_type=workflow_type,
        **overrides,
    )
    wf.initialize()
    return wf
