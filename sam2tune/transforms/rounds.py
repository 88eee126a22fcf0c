"""Post-processing for interactive training output: keep one round of a (R + 1)-round prediction."""

from __future__ import annotations

from monai.config import KeysCollection
from monai.transforms import MapTransform

from sam2tune.utils.flags import as_bool


class SelectRoundd(MapTransform):
    """pred (R + 1, H, W) (one item of ``InteractiveInferer``'s output, rounds as channels) -> (1, H, W) of one round.

    Args:
        keys: prediction key(s), usually "pred".
        index: the round to keep; -1 = after the last corrective click (what the train metric should see).
        stacked: slice-stack predictions: an item (R + 1, S, H, W) becomes (S, H, W); an item (S, H, W) (no rounds
            axis, e.g. validation) is left as it is.
    """

    def __init__(self, keys: KeysCollection = "pred", index: int = -1, stacked: bool = False,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.index, self.stacked = int(index), as_bool(stacked, "stacked")

    def __call__(self, data):
        """Dict with (R + 1, H, W) arrays under ``keys`` -> the same dict with (1, H, W) under them."""
        d = dict(data)
        for key in self.key_iterator(d):
            v = d[key]
            if self.stacked and v.ndim < 4:
                continue
            i = self.index % v.shape[0]
            d[key] = v[i] if self.stacked else v[i : i + 1]
        return d


__all__ = ["SelectRoundd"]
