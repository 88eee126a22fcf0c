"""Random-number-generator state as a checkpoint entry, so a resumed run draws what the uninterrupted run would have.

A run's randomness lives in the process-wide generators (torch CPU/CUDA, NumPy's legacy global, Python's `random`)
and in generators that objects own: MONAI's `Randomizable.R` of every random transform, and `np.random.Generator`s
of sam2tune's window sampler and prompt simulators. `RNGState` finds the owned ones by walking the attributes of
the objects it is given (the trainer's dataset and prepare_batch), the way `monai.data.utils.set_rnd` walks a
dataset to seed it. MONAI has no such checkpointable object (its `set_determinism` only seeds), hence this one.

Everything is stored as tensors, Python numbers and strings, so checkpoints still load with `weights_only=True`.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)
Generator = np.random.RandomState | np.random.Generator | torch.Generator
_KIND = {np.random.RandomState: "RandomState", np.random.Generator: "Generator", torch.Generator: "torch"}
_LEAVES = (torch.Tensor, np.ndarray, torch.nn.Module, str, bytes, int, float, bool, dict, type(None))


def find_generators(root: object, path: str) -> dict[str, Generator]:
    """Every NumPy / torch generator reachable from `root` through attributes and list items
    -> {dotted path: generator}."""
    found: dict[str, Generator] = {}
    seen: set[int] = set()

    def walk(obj: object, where: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, tuple(_KIND)):
            found[where] = obj
        elif isinstance(obj, (list, tuple)):
            for i, item in enumerate(obj):
                walk(item, f"{where}.{i}")
        elif not isinstance(obj, (*_LEAVES, type)) and hasattr(obj, "__dict__"):  # data (dict items) holds no generator
            for key, value in vars(obj).items():
                walk(value, f"{where}.{key}")

    walk(root, path)
    return found


def _legacy_state(state: tuple) -> dict:
    """np.random.RandomState.get_state() / np.random.get_state() -> tensors and numbers."""
    _, keys, pos, has_gauss, cached = state
    return {
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _legacy_tuple(state: dict) -> tuple:
    return "MT19937", state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"], state["cached"]


def _get(gen: Generator) -> dict:
    if isinstance(gen, np.random.RandomState):
        state = _legacy_state(gen.get_state())
    elif isinstance(gen, np.random.Generator):
        state = {"bit_generator": gen.bit_generator.state}  # nested dict of str / int
    else:
        state = {"state": gen.get_state()}
    return {"kind": _KIND[type(gen)], **state}


def _set(gen: Generator, state: dict) -> None:
    if isinstance(gen, np.random.RandomState):
        gen.set_state(_legacy_tuple(state))
    elif isinstance(gen, np.random.Generator):
        gen.bit_generator.state = state["bit_generator"]
    else:
        gen.set_state(state["state"])


class RNGState:
    """Checkpoint entry with state_dict / load_state_dict over the global generators and those owned by `roots`.

    Args:
        roots: name -> object whose generators are included (e.g. {"dataset": ..., "prepare_batch": ...}).
    """

    def __init__(self, roots: dict[str, object] | None = None) -> None:
        self.roots = {k: v for k, v in (roots or {}).items() if v is not None}

    def _owned(self) -> dict[str, Generator]:
        found: dict[str, Generator] = {}
        for name, root in self.roots.items():
            found.update(find_generators(root, name))
        return found

    def state_dict(self) -> dict:
        """-> {"torch", "cuda", "numpy", "python", "owned": {path: state}}; tensors and numbers only."""
        version, internal, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
            "numpy": _legacy_state(np.random.get_state()),
            "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
            "owned": {path: _get(gen) for path, gen in self._owned().items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore every generator of `state` (single process only: ranks of a DDP run keep their own streams)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # rank 0 wrote its own streams: loading them on every rank would give all ranks the same augmentations
            logger.info(
                "Resumed under %d processes: random streams restart per rank (not restored).", dist.get_world_size()
            )
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        np.random.set_state(_legacy_tuple(state["numpy"]))
        python = state["python"]
        random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
        owned, saved = self._owned(), state["owned"]
        for path, gen in owned.items():
            if path in saved and saved[path]["kind"] == _KIND[type(gen)]:
                _set(gen, saved[path])
        if unmatched := sorted(set(owned) ^ set(saved)):
            logger.warning("Random generators not restored (the pipeline differs from the checkpoint's): %s", unmatched)
