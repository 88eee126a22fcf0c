"""Post-processing of MC-dropout outputs: split [probability | uncertainty] and threshold the probability."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.transforms import MapTransform


class SplitUncertaintyd(MapTransform):
    """pred (2S, H, W) from MCDropoutInferer -> prob, uncertainty (1, S, H, W) and pred = (prob >= threshold)
    (1, S, H, W).

    The label, when present, gets the same leading channel (1, S, H, W) so MONAI metrics score each stack as one
    volume (3D Dice per nodule).
    """

    def __init__(self, keys: str = "pred", threshold: float = 0.5, label_key: str = "label",
                 prob_key: str = "prob", uncertainty_key: str = "uncertainty") -> None:
        super().__init__(keys)
        self.threshold, self.label_key = threshold, label_key
        self.prob_key, self.uncertainty_key = prob_key, uncertainty_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        """Decollated item -> item with prob, uncertainty and a binary pred."""
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            if x.ndim != 3 or x.shape[0] % 2:
                raise ValueError(
                    f"{key} must be (2S, H, W) = [probability | uncertainty] from MCDropoutInferer, got "
                    f"{tuple(x.shape)}."
                )
            s = x.shape[0] // 2
            d[self.prob_key], d[self.uncertainty_key] = x[:s][None], x[s:][None]
            d[key] = (x[:s] >= self.threshold).float()[None]
        if self.label_key in d and d[self.label_key] is not None and d[self.label_key].ndim == 3:
            d[self.label_key] = d[self.label_key][None]
        return d
