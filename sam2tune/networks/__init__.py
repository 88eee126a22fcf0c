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
from sam2tune.networks.state_fit import (
    CheckpointMismatchError,
    check_state_dict_fits,
    is_sam2tune_state_dict,
    load_finetuned_state_dict,
)

__all__ = [
    "VARIANTS",
    "BottleneckAdapter",
    "ChannelAdapter",
    "CheckpointMismatchError",
    "CheckpointReport",
    "SAM2Segmenter",
    "add_hiera_adapters",
    "build_sam2_model",
    "check_state_dict_fits",
    "checkpoint_variant",
    "is_sam2tune_state_dict",
    "load_finetuned_state_dict",
    "load_sam2_checkpoint",
    "mc_dropout",
    "mc_dropout_predict",
    "read_state_dict",
    "sam2_config_name",
]

# Exports: TorchScript through ckpt_export (networks/export.py), ONNX (networks/onnx_export.py).
from sam2tune.networks.export import BoxPromptedSegmenter, ImageEncoder, export_torchscript  # noqa: E402
from sam2tune.networks.onnx_export import export_encoder_onnx, export_onnx  # noqa: E402

__all__ += ["BoxPromptedSegmenter", "ImageEncoder", "export_encoder_onnx", "export_onnx", "export_torchscript"]
