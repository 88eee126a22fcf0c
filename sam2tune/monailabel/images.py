"""Read a datastore image as model input and write masks back in the image's own geometry."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from PIL import Image

from sam2tune.monailabel.errors import unprocessable
from sam2tune.transforms.loading import read_image

PHOTO_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass
class LoadedImage:
    """A 2D photo (array (C, H, W) in [0, 1]) or a volume (array (I, J, K) in [0, 1] + affine)."""

    array: np.ndarray
    is_volume: bool
    path: str
    affine: np.ndarray | None = None

    @property
    def ijk_shape(self) -> tuple[int, ...]:
        """Size along Slicer's I, J(, K) axes: (W, H) for photos (I = column), (I, J, K) for volumes."""
        return tuple(self.array.shape) if self.is_volume else (self.array.shape[2], self.array.shape[1])


def is_photo(path: str) -> bool:
    """True for 2D photo files (JPEG/PNG/...), False for volumes (NIfTI, NRRD, DICOM folders)."""
    return os.path.isfile(path) and path.lower().endswith(PHOTO_EXT)


def load_image(path: str, in_channels: int = 3, window: tuple[float, float] | None = None) -> LoadedImage:
    """Datastore path -> LoadedImage; photos keep PIL's row order, volumes are scaled by `window` (else min-max)."""
    if is_photo(path):
        try:
            arr = read_image(path, "RGB" if in_channels == 3 else "L")
        except ValueError as err:
            raise unprocessable(str(err)) from err
        return LoadedImage(arr, False, path)
    try:
        from monai.transforms import LoadImage

        img = LoadImage(image_only=True)(path)
    except Exception as err:  # readers raise many types; the client needs the file and the reason
        raise unprocessable(f"Cannot read image {os.path.basename(path)} ({type(err).__name__}: {err}).") from err
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise unprocessable(
            f"Image {os.path.basename(path)} has shape {arr.shape}; expected a 2D photo or a 3D volume."
        )
    lo, hi = (float(window[0]), float(window[1])) if window else (float(arr.min()), float(arr.max()))
    arr = np.clip((arr - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    affine = np.asarray(getattr(img, "affine", np.eye(4)), dtype=np.float64)
    return LoadedImage(arr, True, path, affine)


def slice_input(image: LoadedImage, k: int, in_channels: int) -> np.ndarray:
    """Model input (C, H, W) for slice k of a volume (H = J, W = I, so IJK clicks are xy) or the photo itself."""
    if not image.is_volume:
        return image.array
    depth = image.array.shape[2]
    if in_channels in (1, 3):
        sl = image.array[:, :, k].T[None]
        return np.repeat(sl, in_channels, 0)
    # N stacked neighbouring slices (2.5D bundles), clamped at the volume ends.
    idx = np.clip(np.arange(k - in_channels // 2, k - in_channels // 2 + in_channels), 0, depth - 1)
    return np.stack([image.array[:, :, i].T for i in idx])


def write_mask(image: LoadedImage, mask: np.ndarray, suffix: str = "") -> str:
    """Label map -> temp file: PNG (H, W) for photos, NIfTI (I, J, K) with the image's affine for volumes
    (NRRD if suffix is .nrrd)."""
    mask = np.asarray(mask, dtype=np.uint8)
    if image.is_volume and suffix == ".nrrd":
        # OHIF v3's MONAI Label panel asks for NRRD: SimpleITK copies the source volume's geometry (LPS) verbatim
        import SimpleITK as sitk

        path = tempfile.NamedTemporaryFile(suffix=suffix, delete=False).name
        out = sitk.GetImageFromArray(mask.transpose(2, 1, 0))  # (I, J, K) -> ITK's (K, J, I) array order
        out.CopyInformation(sitk.ReadImage(image.path))
        sitk.WriteImage(out, path, False)
    elif image.is_volume:
        path = tempfile.NamedTemporaryFile(suffix=suffix or ".nii.gz", delete=False).name
        nib.save(nib.Nifti1Image(mask, image.affine), path)
    else:
        path = tempfile.NamedTemporaryFile(suffix=suffix or ".png", delete=False).name
        Image.fromarray(mask).save(path)
    return path


def read_label(path: str, like: LoadedImage) -> np.ndarray:
    """Uploaded label file -> integer array in the geometry of `like` ((H, W) photos, (I, J, K) volumes);
    422 if unusable."""
    name = os.path.basename(path)
    try:
        if path.lower().endswith(PHOTO_EXT):
            with Image.open(path) as im:
                arr = np.asarray(im.convert("L"))
        else:
            arr = np.asarray(nib.load(path).dataobj)
            if not like.is_volume:
                arr = np.squeeze(arr).T  # a 2D label saved as NIfTI (Slicer) is indexed (I, J): rows are J
    except Exception as err:
        raise unprocessable(
            f"Cannot read label file {name} ({type(err).__name__}: {err}). Upload a PNG or NIfTI mask."
        ) from err
    expected = like.array.shape if like.is_volume else like.array.shape[1:]
    if tuple(arr.shape) != tuple(expected):
        raise unprocessable(
            f"Label {name} has shape {tuple(arr.shape)} but its image {os.path.basename(like.path)} has "
            f"{tuple(expected)}."
        )
    return arr.astype(np.int64)
