"""Small shared utilities: atomic file writes, distributed helpers, boolean flags from strings."""

from sam2tune.utils.atomic import atomic_torch_save, atomic_write_json
from sam2tune.utils.dist import is_rank0, unwrap
from sam2tune.utils.flags import as_bool

__all__ = ["as_bool", "atomic_torch_save", "atomic_write_json", "is_rank0", "unwrap"]
