"""Baselines beside SAM2 on the same bundle data, split, budget and metrics: ResNet U-Net (MONAI) and YOLO-seg."""

from sam2tune.baselines.measure import TrainThroughput, peak_memory_mb
from sam2tune.baselines.prompt_channel import boxes_to_channel
from sam2tune.baselines.resnet_unet import ResNetUNet, load_baseline_checkpoint
from sam2tune.baselines.yolo import YOLOSegBaseline, YOLOSegLoss

__all__ = [
    "ResNetUNet",
    "TrainThroughput",
    "YOLOSegBaseline",
    "YOLOSegLoss",
    "boxes_to_channel",
    "load_baseline_checkpoint",
    "peak_memory_mb",
]
