"""Generic input checks as MONAI dict transforms: refuse bad voxels early, naming the case and the fix."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform


def describe_case(data: Mapping, key: str = "image") -> str:
    """A data dict -> "case '<id>' (<file>)" for error messages (the file from ``data[key]``'s metadata, if any).

    Args:
        data: a MONAI data dict (its "id" names the case).
        key: the key whose MetaTensor metadata names the file.

    Returns:
        The description, e.g. ``case 'lung_001' (/data/imagesTr/lung_001.nii.gz)``.
    """
    ident = data.get("id")
    value = data.get(key)
    path = value.meta.get("filename_or_obj") if isinstance(value, MetaTensor) else None
    return f"case {ident!r} ({path})" if path else f"case {ident!r}"


class CheckFinited(MapTransform):
    """Refuse (default) or replace NaN / inf voxels, naming the case and the fix.

    Args:
        keys: the keys to check.
        fill_value: None = raise on a non-finite voxel; a number = replace non-finite voxels by it.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(self, keys: KeysCollection = "image", fill_value: float | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.fill_value = fill_value

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        """Check (or fix) the keys' arrays.

        Args:
            data: dict holding the keys' arrays (any shape).

        Returns:
            A new dict: the same values, with non-finite voxels set to ``fill_value`` when one is given.

        Raises:
            ValueError: naming the case, the key and the count, when a voxel is NaN/inf and no ``fill_value`` is set.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            bad = ~torch.isfinite(x)
            n = int(bad.sum())
            if not n:
                continue
            if self.fill_value is None:
                raise ValueError(
                    f"{describe_case(d, key)}: {key} has {n} NaN/inf voxels. Fix the file, or set nan_fill to a value "
                    f"(e.g. -1000, air in HU) to replace them."
                )
            d[key] = torch.where(bad, torch.as_tensor(self.fill_value, dtype=x.dtype), d[key])
        return d


__all__ = ["CheckFinited", "describe_case"]
