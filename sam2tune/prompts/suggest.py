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
    """A click the app proposes.

    Attributes:
        point: position (x, y) = (column, row).
        positive: True for a positive click (the model calls the pixel background), False for a negative one.
        score: the uncertain region's mean uncertainty, in [0, 1].
    """

    point: list[int]
    positive: bool
    score: float

    def as_dict(self) -> dict:
        """Give the JSON form of infer responses.

        Returns:
            {"point": [x, y], "label": "positive" | "negative", "score": rounded to 4 decimals}.
        """
        return {
            "point": [int(v) for v in self.point],
            "label": "positive" if self.positive else "negative",
            "score": round(float(self.score), 4),
        }


def uncertainty_map(prob) -> np.ndarray:
    """Per-pixel uncertainty of a prediction, in [0, 1].

    Args:
        prob: foreground probability (H, W), or MC-dropout samples of it (N, H, W).

    Returns:
        float32 (H, W): ``1 - |2p - 1|`` for one map; for samples, 2 x their standard deviation, clipped to [0, 1].
    """
    p = as_numpy(prob).astype(np.float32)
    if p.ndim == 3:
        return np.clip(2.0 * p.std(0), 0.0, 1.0)
    return 1.0 - np.abs(2.0 * p - 1.0)


def suggest_click(prob, level: float = 0.5) -> SuggestedClick | None:
    """Suggest the next click from a foreground probability (H, W) or MC samples of it (N, H, W).

    Args:
        prob: probabilities in [0, 1] of the current prediction (or MC-dropout samples of it).
        level: pixels with uncertainty >= level form the candidate regions.

    Returns:
        The deepest point (farthest from the region border) of the uncertain connected region with the largest total
        uncertainty; its label flips the current prediction there; score = the region's mean uncertainty. None when
        no pixel reaches `level` (the model is sure).
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
