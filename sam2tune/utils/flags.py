"""Booleans from JSON, `--conf`, request bodies or the bundle CLI, where "false" arrives as a (truthy) string."""

from __future__ import annotations

from typing import Any

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def as_bool(value: Any, key: str = "flag") -> bool:
    """True/False, None, 0/1 or a string ("false", "False", "0", "no", "off", "" / "true", "1", "yes", "on") -> bool.

    `python -m monai.bundle run ... --amp false` passes the string "false" (fire only turns `False` into a bool),
    and `bool("false")` is True, so every boolean a user may override goes through this. Anything else raises a
    ValueError naming ``key``.
    """
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"{key} must be true or false (or 1/0, yes/no, on/off), got {value!r}.")


__all__ = ["as_bool"]
