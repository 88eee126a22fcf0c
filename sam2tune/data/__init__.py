"""Readers of public dataset layouts (one module per layout) -> MONAI datalists; phantom writers in ``phantoms``."""

from .embedding_cache import EmbeddingCache
from .refuge import find_refuge_root, refuge_case, refuge_datalist

__all__ = ["EmbeddingCache", "find_refuge_root", "refuge_case", "refuge_datalist"]
