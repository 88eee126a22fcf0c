"""sam2tune: fine-tune Meta's SAM2 the MONAI way (bundles, strategies, MONAI Label)."""

__version__ = "0.1.0"
