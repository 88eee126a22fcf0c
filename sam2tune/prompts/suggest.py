"""Where to click next, from the model's own probabilities: no ground truth needed.

The suggestion is the deepest point of the most uncertain region of the current prediction. Uncertainty is SAM's
own per-pixel confidence, ``u = 1 - |2p - 1|`` (1 at p = 0.5, 0 at p = 0 or 1) of the mask probability ``p``, or,
when several MC-dropout probability maps are given, their standard deviation scaled to [0, 1]. The single-pass
form is the default of the app: it costs nothing beyond the prediction the user is looking at, while MC dropout
needs a network trained with dropout and N decoder passes. The suggested label flips the prediction there: a
pixel the model calls object gets a "negative" suggestion, one it calls background a "positive" one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sam2tune.prompts.simulate import _central_points, as_numpy


@dataclass
class SuggestedClick:
    """A click the app proposes: position (x, y[, z]), label 1 positive / 0 negative, score in [0, 1]."""

    point: list[int]
    positive: bool
    score: float

    def as_dict(self) -> dict:
        """JSON form for infer responses: {"point", "label": "positive"|"negative", "score"}."""
        return {"point": [int(v) for v in self.point], "label": "positive" if self.positive else "negative",
                "score": round(float(self.score), 4)}


def uncertainty_map(prob) -> np.ndarray:
    """Probability (H, W) -> 1 - |2p - 1|; or MC samples (N, H, W) -> 2 x their standard deviation, clipped to [0, 1]."""
    p = as_numpy(prob).astype(np.float32)
    if p.ndim == 3:
        return np.clip(2.0 * p.std(0), 0.0, 1.0)
    return 1.0 - np.abs(2.0 * p - 1.0)


def suggest_click(prob, level: float = 0.5) -> SuggestedClick | None:
    """Foreground probability (H, W), or MC samples (N, H, W) -> the suggested next click, or None when the model is sure.

    Args:
        prob: probabilities in [0, 1] of the current prediction (or MC-dropout samples of it).
        level: pixels with uncertainty >= level form the candidate regions.

    Returns:
        The deepest point (farthest from the region border) of the uncertain connected region with the largest total
        uncertainty; its label flips the current prediction there; score = the region's mean uncertainty.
    """
    p = as_numpy(prob).astype(np.float32)
    mean = p.mean(0) if p.ndim == 3 else p
    u = uncertainty_map(p)
    region = u >= level
    if not region.any():
        return None
    lab, n = ndimage.label(region, structure=ndimage.generate_binary_structure(2, 2))
    totals = ndimage.sum(u, lab, index=np.arange(1, n + 1))
    best = lab == int(np.argmax(totals)) + 1
    row, col = _central_points(best, 1)[0]
    return SuggestedClick([int(col), int(row)], bool(mean[row, col] < 0.5), float(u[best].mean()))


__all__ = ["SuggestedClick", "suggest_click", "uncertainty_map"]
