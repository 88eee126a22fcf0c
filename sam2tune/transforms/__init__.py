"""MONAI dict transforms sam2tune adds: photo and volume loading, multi-rater ground truth, prompt simulation, input
checks, nodule crops, slice windows, RLE masks, instance selection."""

from .checks import CheckFinited
from .ct import LoadVolumed, RandSliceWindowd
from .instance_select import SelectInstanced
from .loading import LoadJPEGd, read_image
from .nodule import NoduleCropd
from .prompt_dropout import RandDropBoxd
from .prompt_transforms import PROMPT_MODES, SimulatePromptsd
from .raters import LoadRaterMeand, rater_mean
from .rle import DecodeRLEd
from .rounds import SelectRoundd
from .save import SaveMaskPNGd

__all__ = [
    "PROMPT_MODES",
    "CheckFinited",
    "DecodeRLEd",
    "LoadJPEGd",
    "LoadRaterMeand",
    "LoadVolumed",
    "NoduleCropd",
    "RandDropBoxd",
    "RandSliceWindowd",
    "SaveMaskPNGd",
    "SelectInstanced",
    "SelectRoundd",
    "SimulatePromptsd",
    "rater_mean",
    "read_image",
]
