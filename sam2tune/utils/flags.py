"""Flags from outside: booleans from JSON, `--conf`, request bodies or the bundle CLI, where "false" arrives as a
(truthy) string; comma-separated integers from the tools' command lines."""

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


def int_list(text: str) -> list[int]:
    """ "0,1, 2" -> [0, 1, 2] (empty items skipped): an argparse ``type`` for the tools' seed / rank lists.

    Raises:
        argparse.ArgumentTypeError: an item is not an integer (argparse names the option and exits with 2).
    """
    import argparse

    try:
        return [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated integers expected, got {text!r}") from None


__all__ = ["as_bool", "int_list"]
