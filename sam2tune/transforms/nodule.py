"""Nodule-centred CT crops: one sample per nodule, in-plane crop (padded at volume borders) x adjacent slices.

A CT volume (1, X, Y, Z) becomes a list of samples, each holding ``image`` and ``label`` as (S, h, w) stacks of
S = 2 * adjacent_slices + 1 consecutive axial slices around the nodule: the network sees each slice as a 1-channel
image, and the loss sees the neighbouring slices together (inter-slice consistency). MONAI's DataLoader flattens
the lists (``list_data_collate``), as it does for RandCropByPosNegLabeld.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable
from scipy import ndimage

from sam2tune.transforms.checks import describe_case


def check_crop_size(crop_size: Sequence[int] | int) -> tuple[int, int]:
    """[h, w] (or one int) -> (h, w); ValueError naming the key `crop_size` for anything else."""
    size = [crop_size, crop_size] if isinstance(crop_size, int) and not isinstance(crop_size, bool) else crop_size
    ok = isinstance(size, Sequence) and len(size) == 2
    ok = ok and all(isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 8 for s in size)
    if not ok:
        raise ValueError(
            f"crop_size must be [height, width] with two integers >= 8 (e.g. [96, 96]), got {crop_size!r}."
        )
    return int(size[0]), int(size[1])


def nodule_components(label: np.ndarray) -> list[dict]:
    """Label (X, Y, Z) -> one dict per 26-connected nodule: centroid (x, y, z), z_range (first, last), voxels."""
    comps, n = ndimage.label(label > 0, structure=np.ones((3, 3, 3)))
    out = []
    for i, sl in enumerate(ndimage.find_objects(comps), start=1):
        mask = comps[sl] == i
        idx = np.argwhere(mask) + [s.start for s in sl]
        out.append({"centroid": idx.mean(0).tolist(), "z_range": (sl[2].start, sl[2].stop - 1),
                    "voxels": int(mask.sum())})
    return out


def crop_with_padding(volume: torch.Tensor, start: Sequence[int], size: Sequence[int],
                      pad_value: float = 0.0) -> torch.Tensor:
    """(C, X, Y, Z) volume -> (C, *size) block starting at voxel `start` (may lie outside: padded with `pad_value`)."""
    out = torch.full((volume.shape[0], *size), pad_value, dtype=volume.dtype)
    src, dst = [], []
    for s, n, dim in zip(start, size, volume.shape[1:], strict=True):
        lo, hi = max(s, 0), min(s + n, dim)
        if hi <= lo:
            return out  # the block lies entirely outside the volume
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[(slice(None), *dst)] = torch.as_tensor(volume)[(slice(None), *src)]
    return out


class NoduleCropd(Randomizable, MapTransform):
    """CT (1, X, Y, Z) + label or centres -> list of per-nodule samples with (S, h, w) image/label stacks.

    Each sample keeps the other entries of the input (e.g. ``id``) and adds ``nodule`` (index), ``center``
    (voxel x, y, z), ``crop_start`` (voxel of the crop's first corner) and ``crop_affine`` (4x4 voxel -> world of the
    crop, so predictions are saved in place). Slices outside the volume and in-plane areas beyond its border are
    padded with ``pad_value`` (0 = air after windowing to [0, 1]), so nodules at the border never fail.

    Args:
        keys: volumes to crop alike (image, and label when present).
        label_key: label whose 26-connected components are the nodules (all foreground of the crop is kept).
        centers_key: used when the label is absent: a list of voxel [x, y, z] nodule centres (inference).
        crop_size: in-plane [h, w] of each crop.
        adjacent_slices: slices kept on each side of the centre slice (S = 2 * adjacent_slices + 1).
        random_slice: training: the centre slice is drawn at random inside the nodule's z extent each time;
            False: the slice through the nodule's centroid.
        pad_value: value of padded voxels for the image keys (labels pad with 0).
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        label_key: str = "label",
        centers_key: str = "centers",
        crop_size: Sequence[int] | int = (96, 96),
        adjacent_slices: int = 1,
        random_slice: bool = False,
        pad_value: float = 0.0,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.crop_size = check_crop_size(crop_size)
        if isinstance(adjacent_slices, bool) or not isinstance(adjacent_slices, int) or adjacent_slices < 0:
            raise ValueError(f"adjacent_slices must be an integer >= 0, got {adjacent_slices!r}.")
        self.label_key, self.centers_key = label_key, centers_key
        self.adjacent_slices, self.random_slice, self.pad_value = adjacent_slices, random_slice, float(pad_value)

    def randomize(self, data: object = None) -> None:  # noqa: D102 - the draw happens per nodule in __call__
        pass

    def _nodules(self, d: Mapping) -> list[dict]:
        if self.label_key in d:
            label = torch.as_tensor(d[self.label_key])
            if label.ndim != 4 or label.shape[0] != 1:
                raise ValueError(
                    f"{describe_case(d, self.label_key)}: label must be (1, X, Y, Z), got {tuple(label.shape)}."
                )
            nodules = nodule_components(label[0].cpu().numpy())
            if not nodules:
                raise ValueError(
                    f"{describe_case(d, self.label_key)}: the label has no nodule (no voxel > 0). Remove the case from "
                    f"dataset.json (nothing to crop around), or give its nodule locations as centres."
                )
            return nodules
        if self.centers_key in d:
            return [{"centroid": [float(c) for c in center], "z_range": None} for center in d[self.centers_key]]
        raise KeyError(
            f"{describe_case(d)}: neither '{self.label_key}' nor '{self.centers_key}' given: nodule crops need one."
        )

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> list[dict]:
        """One volume dict -> a list with one dict per nodule (see the class docstring)."""
        d = dict(data)
        image = d["image"]
        if torch.as_tensor(image).ndim != 4 or image.shape[0] != 1:
            raise ValueError(
                f"{describe_case(d)}: image must be (1, X, Y, Z) (load with ensure_channel_first), "
                f"got {tuple(image.shape)}."
            )
        affine = image.affine.double() if isinstance(image, MetaTensor) else torch.eye(4, dtype=torch.float64)
        shape = image.shape[1:]
        h, w = self.crop_size
        k = self.adjacent_slices
        keys = list(self.key_iterator(d))
        samples = []
        for n, nodule in enumerate(self._nodules(d)):
            cx, cy, cz = nodule["centroid"]
            for axis, c in enumerate((cx, cy, cz)):
                if not -0.5 <= c < shape[axis] - 0.5:
                    raise ValueError(
                        f"{describe_case(d)}: nodule centre {nodule['centroid']} lies outside the volume "
                        f"{tuple(shape)}."
                    )
            z = int(round(cz))
            if self.random_slice and nodule["z_range"] is not None:
                z = int(self.R.randint(nodule["z_range"][0], nodule["z_range"][1] + 1))
            start = [int(round(cx)) - h // 2, int(round(cy)) - w // 2, z - k]
            size = [h, w, 2 * k + 1]
            shift = torch.eye(4, dtype=torch.float64)
            shift[:3, 3] = torch.tensor(start, dtype=torch.float64)
            sample = {key: value for key, value in d.items() if key not in (*keys, self.centers_key)}
            for key in keys:
                pad = self.pad_value if key != self.label_key else 0.0
                block = crop_with_padding(torch.as_tensor(d[key]).as_subclass(torch.Tensor), start, size, pad)
                # (1, h, w, S) -> (S, h, w): slices become channels, each one an image for the 2D network.
                sample[key] = block[0].permute(2, 0, 1).contiguous().float()
            sample.update({"nodule": n, "center": torch.tensor([cx, cy, cz]), "crop_start": torch.tensor(start),
                           "crop_affine": affine @ shift})
            samples.append(sample)
        return samples


__all__ = ["NoduleCropd", "check_crop_size", "crop_with_padding", "nodule_components"]
