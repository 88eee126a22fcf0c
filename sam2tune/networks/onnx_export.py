"""ONNX export of a SAM2Segmenter (box-prompted model, image encoder alone), checked against PyTorch in onnxruntime.

Uses torch's TorchScript-based exporter (``dynamo=False``): it needs no onnxscript and works offline. The graphs are
those of sam2tune.networks.export (``BoxPromptedSegmenter``, ``ImageEncoder``); the batch dimension stays free.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from sam2tune.networks.export import (
    BoxPromptedSegmenter,
    ImageEncoder,
    _eval,
    example_inputs,
)
from sam2tune.utils.atomic import atomic_write_path

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def export_onnx(
    segmenter: nn.Module,
    path: str | os.PathLike,
    size: Sequence[int] | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> Path:
    """Export the promptable model (image encoder + prompt encoder + mask decoder) to ONNX: (image, boxes) -> logits.

    Uses torch's TorchScript-based exporter (``dynamo=False``): it needs no onnxscript and runs offline.

    Args:
        segmenter: the SAM2Segmenter, weights loaded (LoRA merged or not: the graph is the same computation).
        path: the .onnx file to write (atomically).
        size: (H, W) input size of the graph (fixed in the graph); default the model's image_size.
        opset: ONNX opset version.
        dynamic_batch: let the batch dimension vary (else fixed at 1).

    Returns:
        The written path. Inputs "image" (B, C, H, W) float32 in [0, 1] and "boxes" (B, 4) float32 xyxy in input
        pixels (NaN row = no box); output "logits" (B, 1, H, W).
    """
    wrapper = BoxPromptedSegmenter(segmenter, size)
    inputs = example_inputs(segmenter, 1, size)
    axes = {"image": {0: "batch"}, "boxes": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    return _onnx_export(wrapper, inputs, path, ["image", "boxes"], ["logits"], axes, opset)


def export_encoder_onnx(
    segmenter: nn.Module,
    path: str | os.PathLike,
    size: Sequence[int] | None = None,
    project_high_res: bool = False,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> Path:
    """Export the image encoder alone to ONNX: image -> (image_embed, high_res_s0, high_res_s1).

    With ``project_high_res=False`` (default) the outputs are what ``SAM2Segmenter.encode(project_high_res=False)``
    gives, i.e. what sam2tune's embedding cache stores.

    Args:
        segmenter: the SAM2Segmenter, weights loaded.
        path: the .onnx file to write (atomically).
        size: (H, W) input size of the graph; default the model's image_size.
        project_high_res: apply the mask decoder's conv_s0 / conv_s1 to the high-res maps.
        opset: ONNX opset version.
        dynamic_batch: let the batch dimension vary (else fixed at 1).

    Returns:
        The written path. Input "image"; outputs "image_embed", "high_res_s0", "high_res_s1".
    """
    wrapper = ImageEncoder(segmenter, project_high_res)
    image, _ = example_inputs(segmenter, 1, size)
    names = ["image_embed", "high_res_s0", "high_res_s1"]
    axes = {n: {0: "batch"} for n in ["image", *names]} if dynamic_batch else None
    return _onnx_export(wrapper, (image,), path, ["image"], names, axes, opset)


def run_onnx(path: str | os.PathLike, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """Run an ONNX file with onnxruntime on the CPU.

    Args:
        path: the .onnx file.
        inputs: input name -> tensor.

    Returns:
        The outputs, in the file's output order, as CPU tensors.

    Raises:
        ImportError: when onnxruntime is not installed.
    """
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - pinned in requirements.txt
        raise ImportError("onnxruntime is needed to run ONNX exports: pip install onnxruntime") from e
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {k: v.detach().cpu().numpy() for k, v in inputs.items()}
    return [torch.from_numpy(o) for o in session.run(None, feeds)]


def onnx_max_abs_diff(
    path: str | os.PathLike, module: nn.Module, inputs: Mapping[str, torch.Tensor]
) -> list[float]:
    """Max |onnxruntime - PyTorch| of each output of `module` (a wrapper above) on `inputs`.

    Args:
        path: the .onnx file exported from `module`.
        module: ``BoxPromptedSegmenter`` or ``ImageEncoder`` (called with the inputs in order, eval mode, no grad).
        inputs: input name -> tensor, in the module's argument order.

    Returns:
        One float per output.

    Raises:
        ValueError: when the file and the module have different numbers of outputs.
    """
    with _eval(module), torch.no_grad():
        expected = module(*inputs.values())
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = run_onnx(path, inputs)
    if len(got) != len(expected):
        raise ValueError(f"{path} has {len(got)} outputs, the PyTorch module {len(expected)}.")
    return [(g - e.detach().cpu()).abs().max().item() for g, e in zip(got, expected, strict=True)]




def _onnx_export(module, inputs, path, input_names, output_names, dynamic_axes, opset) -> Path:
    def write(tmp: str) -> None:
        with _eval(module), torch.no_grad():
            torch.onnx.export(
                module,
                inputs,
                tmp,
                dynamo=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
            )

    written = Path(atomic_write_path(path, write))
    logger.info("Exported ONNX %s (inputs %s, outputs %s, opset %d)", written, input_names, output_names, opset)
    return written


