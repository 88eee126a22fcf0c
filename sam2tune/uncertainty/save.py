"""Save per-nodule predictions as NIfTI crops placed in the source CT's world coordinates."""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from monai.transforms import MapTransform

logger = logging.getLogger(__name__)


class SaveNoduleCropd(MapTransform):
    """Write `<output_dir>/<id>_nodule<k>_<key>.nii.gz` for each key (e.g. pred, prob, uncertainty).

    Arrays (1, S, h, w) or (S, h, w) are written as (h, w, S) volumes with the crop's ``crop_affine`` (from
    NoduleCropd), so they overlay the original CT in any viewer.
    """

    def __init__(self, keys: Sequence[str] = ("pred", "prob", "uncertainty"), output_dir: str = "./out",
                 id_key: str = "id", allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir, self.id_key = output_dir, id_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        """Decollated item -> the same item, files written."""
        d = dict(data)
        if "crop_affine" not in d:
            raise KeyError("SaveNoduleCropd needs 'crop_affine' (written by NoduleCropd) to place the crops.")
        affine = np.asarray(torch.as_tensor(d["crop_affine"]).cpu(), dtype=np.float64)
        os.makedirs(self.output_dir, exist_ok=True)
        stem = f"{d.get(self.id_key, 'volume')}_nodule{int(d.get('nodule', 0))}"
        for key in self.key_iterator(d):
            arr = torch.as_tensor(d[key]).detach().cpu().float().numpy()
            arr = arr[0] if arr.ndim == 4 else arr
            vol = np.transpose(arr, (1, 2, 0))  # (S, h, w) -> (h, w, S): the crop's voxel axes (x, y, z)
            dtype = np.uint8 if key == "pred" else np.float32
            path = os.path.join(self.output_dir, f"{stem}_{key}.nii.gz")
            nib.save(nib.Nifti1Image(vol.astype(dtype), affine), path)
            logger.info("Saved %s", path)
        return d
