"""Readers of public dataset layouts (one module per layout) -> MONAI datalists; phantom writers in ``phantoms``."""

from .refuge import find_refuge_root, refuge_case, refuge_datalist

__all__ = ["find_refuge_root", "refuge_case", "refuge_datalist"]
