"""SAM2 networks: build variants at any size, load official checkpoints, promptable segmenter, MC dropout."""

from sam2tune.networks.adapters import BottleneckAdapter, add_hiera_adapters
from sam2tune.networks.build import (
    VARIANTS,
    CheckpointReport,
    build_sam2_model,
    checkpoint_variant,
    load_sam2_checkpoint,
    read_state_dict,
    sam2_config_name,
)
from sam2tune.networks.channel_adapter import ChannelAdapter
from sam2tune.networks.mc_dropout import mc_dropout, mc_dropout_predict
from sam2tune.networks.segmenter import SAM2Segmenter

__all__ = [
    "VARIANTS",
    "BottleneckAdapter",
    "ChannelAdapter",
    "CheckpointReport",
    "SAM2Segmenter",
    "add_hiera_adapters",
    "build_sam2_model",
    "checkpoint_variant",
    "load_sam2_checkpoint",
    "mc_dropout",
    "mc_dropout_predict",
    "read_state_dict",
    "sam2_config_name",
]
