"""MONAI dict transforms sam2tune adds: photo loading, multi-rater ground truth, prompt simulation."""

from .loading import LoadJPEGd, read_image
from .prompt_dropout import RandDropBoxd
from .prompt_transforms import PROMPT_MODES, SimulatePromptsd
from .raters import LoadRaterMeand, rater_mean
from .rounds import SelectRoundd
from .save import SaveMaskPNGd

__all__ = [
    "PROMPT_MODES",
    "LoadJPEGd",
    "LoadRaterMeand",
    "RandDropBoxd",
    "SaveMaskPNGd",
    "SelectRoundd",
    "SimulatePromptsd",
    "rater_mean",
    "read_image",
]
