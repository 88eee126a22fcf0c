"""Uncertainty: Monte-Carlo dropout inference on slice stacks, its post-processing and saving."""

from sam2tune.uncertainty.inferer import UNCERTAINTIES, MCDropoutInferer, mc_stack_predict
from sam2tune.uncertainty.save import SaveNoduleCropd
from sam2tune.uncertainty.transforms import SplitUncertaintyd

__all__ = ["UNCERTAINTIES", "MCDropoutInferer", "SaveNoduleCropd", "SplitUncertaintyd", "mc_stack_predict"]
