"""Atomic writes: a killed process never leaves a half-written checkpoint or report behind."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from typing import Any

import torch


def _atomic(path: str, write) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_write(path: str, write) -> str:
    """Write `path` atomically: `write(f)` fills a binary file in the same folder, then it replaces `path`."""
    return _atomic(path, write)


def atomic_write_path(path: str, write) -> str:
    """Write `path` atomically with a writer that wants a file name (torch.jit.save, onnx export): `write(tmp_path)`."""
    path = str(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: str) -> str:
    """torch.save `obj` to `path` through a temporary file in the same folder; returns `path`."""
    return _atomic(path, lambda f: torch.save(obj, f))


def atomic_write_json(obj: Any, path: str) -> str:
    """Write `obj` as indented JSON to `path` atomically; returns `path`."""
    return _atomic(path, lambda f: f.write(json.dumps(obj, indent=2, default=_json_default).encode()))


def atomic_write_text(path: str, text: str) -> str:
    """Write `text` (UTF-8) to `path` atomically; returns `path`."""
    return _atomic(path, lambda f: f.write(text.encode()))


def atomic_write_csv(path: str, rows: list[dict], fieldnames: list[str] | None = None) -> str:
    """Write dict rows as CSV (header first) to `path` atomically; returns `path`.

    Args:
        path: the CSV file.
        rows: one dict per row.
        fieldnames: the columns, in order (default: the first row's keys; no rows and no fieldnames: an empty file).

    Returns:
        `path`.
    """
    buf = io.StringIO()
    fields = list(fieldnames) if fieldnames is not None else list(rows[0]) if rows else []
    if fields:
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)
