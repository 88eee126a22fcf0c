"""Post-processing for interactive training output: keep one round of a (R + 1)-round prediction."""

from __future__ import annotations

from monai.config import KeysCollection
from monai.transforms import MapTransform


class SelectRoundd(MapTransform):
    """pred (R + 1, H, W) (one item of ``InteractiveInferer``'s output, rounds as channels) -> (1, H, W) of one round.

    Args:
        keys: prediction key(s), usually "pred".
        index: the round to keep; -1 = after the last corrective click (what the train metric should see).
    """

    def __init__(self, keys: KeysCollection = "pred", index: int = -1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.index = int(index)

    def __call__(self, data):
        """Dict with (R + 1, H, W) arrays under ``keys`` -> the same dict with (1, H, W) under them."""
        d = dict(data)
        for key in self.key_iterator(d):
            v = d[key]
            i = self.index % v.shape[0]
            d[key] = v[i : i + 1]
        return d


__all__ = ["SelectRoundd"]
