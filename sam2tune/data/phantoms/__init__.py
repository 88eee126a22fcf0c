"""Phantom dataset writers: each writes a task's real public layout with truth known by construction.

Writers live in ``sam2tune/data/phantoms/<task>.py`` as ``write_<task>_phantoms(out, cases, seed, **kw) -> dict``
and are found through ``PHANTOM_WRITERS``, so a task's module is only imported when asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

PHANTOM_WRITERS: dict[str, str] = {
    "refuge": "sam2tune.data.phantoms.refuge:write_refuge_phantoms",
    "btcv": "sam2tune.data.phantoms.btcv:write_btcv_phantoms",
    "lung_nodule": "sam2tune.data.phantoms.lung_nodule:write_lung_nodule_phantoms",
    "knee": "sam2tune.data.phantoms.knee:write_knee_phantoms",
    "severstal": "sam2tune.data.phantoms.severstal:write_severstal_phantoms",
}


def get_phantom_writer(task: str) -> Callable[..., dict]:
    """Task name -> its writer function; ValueError for unknown tasks, NotImplementedError if not written yet."""
    if task not in PHANTOM_WRITERS:
        raise ValueError(f"Unknown phantom task {task!r}; choose one of: {', '.join(PHANTOM_WRITERS)}.")
    module_name, func_name = PHANTOM_WRITERS[task].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:  # the module exists but one of *its* imports is missing: a real error
            raise
        raise NotImplementedError(
            f"The phantom writer for {task} is not available in this version of sam2tune (no module {module_name})."
        ) from err
    try:
        return getattr(module, func_name)
    except AttributeError as err:
        raise NotImplementedError(
            f"The phantom writer for {task} is not available: {module_name} has no function {func_name}."
        ) from err


def write_phantoms(task: str, out: str, cases: int | None = None, seed: int = 0, **kwargs: object) -> dict:
    """Write ``task``'s phantom dataset under ``out`` (``cases=None``: the writer's default) -> the writer's summary."""
    writer = get_phantom_writer(task)
    if cases is not None:
        kwargs["cases"] = cases
    return writer(out, seed=seed, **kwargs)


__all__ = ["PHANTOM_WRITERS", "get_phantom_writer", "write_phantoms"]
