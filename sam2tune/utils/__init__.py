"""Small shared utilities: atomic file writes, distributed helpers."""

from sam2tune.utils.atomic import atomic_torch_save, atomic_write_json
from sam2tune.utils.dist import is_rank0, unwrap

__all__ = ["atomic_torch_save", "atomic_write_json", "is_rank0", "unwrap"]
