"""Write predicted masks as PNG files named after the input (rows = image height, as the loaders read them)."""

from __future__ import annotations

import os

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform
from PIL import Image


class SaveMaskPNGd(MapTransform):
    """Save a (1, H, W) binary mask under `keys` to `<output_dir>/<id>_mask.png` (0/255).

    MONAI's SaveImaged + PILWriter assume MONAI's own (W, H) image order; sam2tune's 2D loaders keep (H, W),
    so this writes the array as it is.
    """

    def __init__(self, keys: KeysCollection = "pred", output_dir: str = "./outputs", id_key: str = "id",
                 postfix: str = "mask") -> None:
        super().__init__(keys)
        self.output_dir, self.id_key, self.postfix = output_dir, id_key, postfix

    def __call__(self, data: dict) -> dict:
        """Write the file(s) and record their paths under `<key>_path`."""
        d = dict(data)
        os.makedirs(self.output_dir, exist_ok=True)
        ident = d.get(self.id_key) or os.path.splitext(
            os.path.basename(str(d.get("image_meta_dict", {}).get("filename_or_obj", "image")))
        )[0]
        for key in self.key_iterator(d):
            mask = np.asarray(d[key].detach().cpu() if hasattr(d[key], "detach") else d[key]).squeeze()
            if mask.ndim != 2:
                raise ValueError(f"SaveMaskPNGd expects a (1, H, W) mask under {key!r}, got shape {mask.shape}.")
            path = os.path.join(self.output_dir, f"{ident}_{self.postfix}.png")
            Image.fromarray(((mask > 0.5) * 255).astype(np.uint8)).save(path)
            d[f"{key}_path"] = path
        return d
