"""Interactive sessions: each new click refines the previous answer instead of starting over.

3D Slicer's MONAI Label plugin resends every click of a segment with each request. The app keeps, per
(image, label), the clicks and ROI of the last answer and SAM's low-resolution mask logits (B, 1, S/4, S/4) of it.
When a request's clicks *extend* the stored ones (same ROI, same options, every stored click still there, at least
one more), the stored logits go back in as SAM's mask prompt together with all clicks (what SAM2's image predictor
does with ``mask_input``). A new or changed ROI, fewer or other clicks, the same clicks again, other weights (hot
reload) or ``"reset": true`` start over. The store is a bounded LRU and thread-safe.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch

from sam2tune.monailabel.prompts import SlicePrompt

DEFAULT_CAPACITY = 64


@dataclass(frozen=True)
class Click:
    """One click in IJK voxels: (i, j) on slice k (k = -1 for 2D photos), positive or negative."""

    i: int
    j: int
    k: int
    positive: bool


def request_clicks(prompts: dict[int, SlicePrompt]) -> tuple[Click, ...]:
    """Parsed prompts {slice: SlicePrompt} -> the request's clicks (model pixels (x, y) = IJK (i, j))."""
    return tuple(
        Click(int(x), int(y), int(k), bool(lab == 1))
        for k, p in prompts.items()
        for (x, y), lab in zip(p.points.tolist(), p.labels.tolist(), strict=True)
    )


def request_roi(prompts: dict[int, SlicePrompt]) -> tuple:
    """Parsed prompts -> a hashable form of the ROI boxes ((slice, (x0, y0, x1, y1)), ...); () without ROI."""
    return tuple(
        sorted((int(k), tuple(round(float(v), 3) for v in p.box)) for k, p in prompts.items() if p.box is not None)
    )


@dataclass
class Session:
    """What the app remembers of its last answer for one (image, label).

    Attributes:
        clicks: every click of that request.
        roi: its ROI (see ``request_roi``).
        options: request options the answer depends on (e.g. 3D ``propagate``).
        generation: ``BundleModel.generation`` of the weights that answered (a reload invalidates the session).
        low_res: {slice: SAM low-res mask logits (1, 1, S/4, S/4) on the CPU} of the last answer: float32 for
            slices predicted alone (2D photos: slice -1), float16 for every slice of a 3D propagation (any of them
            may be the next one corrected).
        key_slice: the key (conditioning) slice of the last 3D propagation, else None.
    """

    clicks: tuple[Click, ...]
    roi: tuple
    options: tuple
    generation: int
    low_res: dict[int, torch.Tensor] = field(default_factory=dict)
    key_slice: int | None = None


@dataclass(frozen=True)
class Decision:
    """Whether a request refines its session: `refined`, why (`reason`), and the clicks it adds (`new_clicks`)."""

    refined: bool
    reason: str
    new_clicks: tuple[Click, ...] = ()


def decide(stored: Session | None, clicks: Sequence[Click], roi: tuple, options: tuple, generation: int,
           reset: bool = False) -> Decision:
    """Does a request with `clicks` / `roi` / `options` refine `stored`, or start over?

    Args:
        stored: the session of the request's (image, label), or None.
        clicks: the request's clicks (all of them, as Slicer resends them).
        roi: the request's ROI (``request_roi``).
        options: the request's options that change the answer.
        generation: the generation of the weights about to answer.
        reset: the request's ``reset`` flag.

    Returns:
        refined=True with the added clicks when every stored click is still there and at least one is new, the ROI,
        options and weights are unchanged and no reset was asked; otherwise refined=False and the reason.
    """
    if reset:
        return Decision(False, "reset")
    if stored is None:
        return Decision(False, "new")
    if stored.generation != generation:
        return Decision(False, "weights changed")
    if stored.roi != roi:
        return Decision(False, "roi changed")
    if stored.options != options:
        return Decision(False, "options changed")
    left = Counter(clicks)
    left.subtract(stored.clicks)
    if any(n < 0 for n in left.values()):
        return Decision(False, "clicks changed")
    if len(clicks) == len(stored.clicks):
        return Decision(False, "same clicks")
    known, new = Counter(stored.clicks), []
    for c in clicks:  # in request order: the clicks the stored ones do not account for
        if known[c] > 0:
            known[c] -= 1
        else:
            new.append(c)
    return Decision(True, "extended", tuple(new))


def corrected_slice(new_clicks: Sequence[Click]) -> int:
    """The slice a 3D correction is on: the one holding most of the new clicks (ties: the last one sent)."""
    counts = Counter(c.k for c in new_clicks)
    best = max(counts.values())
    return [c.k for c in new_clicks if counts[c.k] == best][-1]


class SessionStore:
    """Thread-safe LRU of Session objects.

    Args:
        capacity: sessions kept; the least recently used one is dropped beyond it.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"session capacity must be >= 1, got {capacity}.")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Session] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Session | None:
        """The session of `key` (now the most recently used), or None."""
        with self._lock:
            session = self._items.get(key)
            if session is not None:
                self._items.move_to_end(key)
            return session

    def put(self, key: Hashable, session: Session) -> None:
        """Store (or replace) the session of `key`, dropping the least recently used beyond capacity."""
        with self._lock:
            self._items[key] = session
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every session (e.g. after a weights swap)."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


__all__ = ["Click", "DEFAULT_CAPACITY", "Decision", "Session", "SessionStore", "corrected_slice", "decide",
           "request_clicks", "request_roi"]
