"""Export a SAM2Segmenter: TorchScript (traced, also what ``monai.bundle ckpt_export`` writes) and ONNX, both checked.

SAM2Segmenter's forward takes many optional prompts and keyword arguments, so TorchScript cannot *script* it.
The exported graphs are *traced* through a fixed signature instead:

- ``BoxPromptedSegmenter``: image (B, C, H, W) in [0, 1] + boxes (B, 4) xyxy in input pixels -> logits (B, 1, H, W).
  A NaN box means "no box for this sample" (as in SAM2Segmenter); ``boxes=None`` means the network's learned
  prompt token(s), or the whole-image box when it has none.
- ``ImageEncoder``: image -> (image_embed, high-res map s0, high-res map s1): the features an embedding cache keeps.

A traced graph is fixed to the input height and width it was traced at (default: the model's ``image_size``); the
batch size stays free. ``torch.jit.script`` on a BoxPromptedSegmenter (which is what ``ckpt_export`` does without
``use_trace``) calls ``__prepare_scriptable__``: the box-prompted graph is traced there and wrapped in a small
scriptable module (``ScriptableBoxPrompted``), so the model zoo's ``ckpt_export`` call works unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sam2tune.utils.atomic import atomic_write_path

logger = logging.getLogger(__name__)

# ---- traceable wrappers ----------------------------------------------------------------------------------------------
class BoxPromptedSegmenter(nn.Module):
    """A SAM2Segmenter behind a fixed, traceable signature: (image, boxes) -> logits (B, 1, H, W).

    Its ``state_dict`` / ``load_state_dict`` are the wrapped segmenter's (keys ``sam.*``, no ``segmenter.`` prefix),
    so a bundle's ``models/model.pt`` loads into it directly (MONAI's ``CheckpointLoader``, ``ckpt_export``, the
    model zoo's fake weights).

    Args:
        segmenter: a ``sam2tune.networks.SAM2Segmenter`` (any module with its ``forward(image, boxes=...)`` and
            ``image_size`` / ``channel_adapter.in_channels`` / ``prompt_tokens`` attributes).
        trace_size: (H, W) of the input the graph is traced at when scripted (default: the model's image_size).
    """

    def __init__(self, segmenter: nn.Module, trace_size: Sequence[int] | None = None) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.trace_size = _size_of(segmenter, trace_size)

    def forward(self, image: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) image in [0, 1] + (B, 4) xyxy boxes in its pixels (NaN row = no box) -> logits (B, 1, H, W).

        Args:
            image: (B, C, H, W) float image in [0, 1].
            boxes: (B, 4) boxes; None = learned prompt token(s) when the network has them, else the whole image.

        Returns:
            Logits (B, 1, H, W) at the input resolution.
        """
        if boxes is None:
            if getattr(self.segmenter, "prompt_tokens", None) is not None:
                return self.segmenter(image)
            boxes = whole_image_boxes(image)
        return self.segmenter(image, boxes=boxes)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Return the wrapped segmenter's state_dict (keys ``sam.*``, no ``segmenter.`` prefix).

        Args:
            *args: as for ``nn.Module.state_dict``.
            **kwargs: as for ``nn.Module.state_dict``.

        Returns:
            ``self.segmenter.state_dict(*args, **kwargs)``.
        """
        return self.segmenter.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Load a SAM2Segmenter state_dict (e.g. a bundle's model.pt) into the wrapped segmenter.

        Args:
            state_dict: SAM2Segmenter keys (``sam.*``, ...).
            strict: as for ``SAM2Segmenter.load_state_dict`` (strict raises ``CheckpointMismatchError``).
            assign: as for ``nn.Module.load_state_dict``.

        Returns:
            torch's (missing_keys, unexpected_keys) result.
        """
        return self.segmenter.load_state_dict(state_dict, strict=strict, assign=assign)

    def __prepare_scriptable__(self) -> nn.Module:
        """Give ``torch.jit.script`` the module to compile in place of this one.

        Returns:
            ``prepare_scriptable(self.segmenter, self.trace_size)``: traced graphs behind a scriptable forward.
        """
        return prepare_scriptable(self.segmenter, self.trace_size)


class ImageEncoder(nn.Module):
    """A SAM2Segmenter's image encoder: image (B, C, H, W) -> (image_embed, high_res_s0, high_res_s1).

    Args:
        segmenter: a ``sam2tune.networks.SAM2Segmenter``.
        project_high_res: False (default) returns the high-res maps before the mask decoder's conv_s0 / conv_s1,
            as ``SAM2Segmenter.encode(project_high_res=False)`` does for the embedding cache; True returns them
            projected (the mask decoder's inputs).
    """

    def __init__(self, segmenter: nn.Module, project_high_res: bool = False) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.project_high_res = project_high_res

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) in [0, 1] -> (B, 256, S/16, S/16), (B, C0, S/4, S/4), (B, C1, S/8, S/8); S = image_size.

        Args:
            image: (B, C, H, W) float image in [0, 1].

        Returns:
            image_embed, high-res map at S/4, high-res map at S/8.
        """
        features = self.segmenter.encode(image, project_high_res=self.project_high_res)
        high = features["high_res_feats" if self.project_high_res else "raw_high_res_feats"]
        return features["image_embed"], high[0], high[1]


def whole_image_boxes(image: torch.Tensor) -> torch.Tensor:
    """(B, 4) xyxy boxes covering the whole of each (B, C, H, W) image: [0, 0, W, H].

    Args:
        image: (B, C, H, W) tensor.

    Returns:
        float32 (B, 4) tensor on the image's device.
    """
    h, w = image.shape[-2], image.shape[-1]
    box = torch.tensor([0.0, 0.0, float(w), float(h)], dtype=torch.float32, device=image.device)
    return box.unsqueeze(0).expand(image.shape[0], 4)


class ScriptableBoxPrompted(nn.Module):
    """The scriptable shell ``torch.jit.script`` compiles for a SAM2Segmenter: traced graphs behind ``forward``.

    Args:
        boxed: traced (image, boxes) -> logits graph.
        unprompted: traced image -> logits graph (learned prompt tokens, or the whole-image box).
        height: input height both graphs were traced at.
        width: input width both graphs were traced at.
    """

    def __init__(self, boxed: torch.jit.ScriptModule, unprompted: torch.jit.ScriptModule, height: int, width: int):
        super().__init__()
        self.boxed = boxed
        self.unprompted = unprompted
        self.height = height
        self.width = width

    def forward(self, image: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) + optional (B, 4) boxes -> logits (B, 1, H, W); H, W must be the traced size.

        Args:
            image: (B, C, H, W) float image in [0, 1], at the traced height and width.
            boxes: (B, 4) xyxy boxes in input pixels (NaN row = no box); None = the unprompted graph.

        Returns:
            Logits (B, 1, H, W).

        Raises:
            ValueError: when the image's height or width is not the traced size.
        """
        if image.shape[-2] != self.height or image.shape[-1] != self.width:
            raise ValueError(
                "This TorchScript SAM2 graph was traced at input size "
                + str(self.height)
                + "x"
                + str(self.width)
                + ", got "
                + str(image.shape[-2])
                + "x"
                + str(image.shape[-1])
                + ": resize the image, or export again at this size."
            )
        if boxes is None:
            return self.unprompted(image)
        return self.boxed(image, boxes)


class _Unprompted(nn.Module):
    def __init__(self, wrapper: BoxPromptedSegmenter) -> None:
        super().__init__()
        self.wrapper = wrapper

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.wrapper(image)


# ---- TorchScript -----------------------------------------------------------------------------------------------------
def example_inputs(segmenter: nn.Module, batch: int = 1, size: Sequence[int] | None = None) -> tuple[torch.Tensor, ...]:
    """Make random (image, boxes) for tracing / checking: image in [0, 1], one box per sample inside the image.

    The values are seeded (the same on every call), and both tensors are on the segmenter's device.

    Args:
        segmenter: the SAM2Segmenter (gives in_channels, image_size and device).
        batch: batch size.
        size: (H, W) of the image; default the model's image_size.

    Returns:
        (image (batch, C, H, W) float32, boxes (batch, 4) float32).

    Raises:
        ValueError: when `size` is not a positive (H, W).
    """
    h, w = _size_of(segmenter, size)
    device = _device_of(segmenter)
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(batch, _in_channels_of(segmenter), h, w, generator=generator).to(device)
    lo = torch.rand(batch, 2, generator=generator) * 0.4
    hi = 0.6 + torch.rand(batch, 2, generator=generator) * 0.4
    scale = torch.tensor([w, h], dtype=torch.float32)
    boxes = torch.cat([lo * scale, hi * scale], dim=1).to(device)
    return image, boxes


def trace_box_prompted(
    segmenter: nn.Module, size: Sequence[int] | None = None, batch: int = 1
) -> torch.jit.ScriptModule:
    """Trace the (image, boxes) -> logits graph of a SAM2Segmenter with ``torch.jit.trace``.

    The segmenter is traced in eval mode (dropout off) and its previous mode is restored afterwards.

    Args:
        segmenter: the SAM2Segmenter.
        size: (H, W) the graph is traced at (and only valid at); default the model's image_size.
        batch: batch size of the example inputs (the traced graph accepts any batch size).

    Returns:
        The traced module: forward(image, boxes) -> logits (B, 1, H, W).
    """
    wrapper = BoxPromptedSegmenter(segmenter, size)
    with _eval(segmenter), torch.no_grad():
        return torch.jit.trace(wrapper, example_inputs(segmenter, batch, size), check_trace=False)


def prepare_scriptable(segmenter: nn.Module, size: Sequence[int] | None = None) -> ScriptableBoxPrompted:
    """Build the module ``torch.jit.script`` should compile for a SAM2Segmenter (``__prepare_scriptable__``).

    Traces the box-prompted graph and the unprompted one and puts them behind a scriptable
    ``forward(image, boxes=None)``.

    Args:
        segmenter: the SAM2Segmenter, weights loaded.
        size: (H, W) to trace at; default the model's image_size.

    Returns:
        A ``ScriptableBoxPrompted`` (an nn.Module that ``torch.jit.script`` compiles).
    """
    h, w = _size_of(segmenter, size)
    boxed = trace_box_prompted(segmenter, (h, w))
    # Batch 2: with no sparse prompt SAM2's prompt encoder returns batch 1 and SAM2Segmenter expands it; a batch-1
    # trace would record no expand and the graph would then fail on any other batch size.
    image, _ = example_inputs(segmenter, 2, (h, w))
    with _eval(segmenter), torch.no_grad():
        unprompted = torch.jit.trace(_Unprompted(BoxPromptedSegmenter(segmenter, (h, w))), (image,), check_trace=False)
    return ScriptableBoxPrompted(boxed, unprompted, h, w)


def export_torchscript(
    segmenter: nn.Module,
    path: str | os.PathLike,
    size: Sequence[int] | None = None,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write a scripted (image, boxes=None) -> logits TorchScript file that ``torch.jit.load`` reads without sam2tune.

    The graph is fixed to the traced input size (see ``ScriptableBoxPrompted``); the batch size stays free.

    Args:
        segmenter: the SAM2Segmenter, weights loaded.
        path: the .ts file to write (atomically).
        size: (H, W) input size of the graph; default the model's image_size.
        extra_files: more files stored inside the archive (e.g. ``{"metadata.json": ...}``), as torch.jit.save does.

    Returns:
        The written path.
    """
    module = torch.jit.script(prepare_scriptable(segmenter, size))
    files = {k: v.encode() if isinstance(v, str) else v for k, v in (extra_files or {}).items()}
    return Path(atomic_write_path(path, lambda tmp: torch.jit.save(module, tmp, _extra_files=files)))


# ---- helpers ---------------------------------------------------------------------------------------------------------
def _size_of(segmenter: nn.Module, size: Sequence[int] | None) -> tuple[int, int]:
    if size is None:
        s = int(segmenter.image_size)
        return s, s
    if isinstance(size, int):
        return size, size
    if len(size) != 2 or any(int(v) <= 0 for v in size):
        raise ValueError(f"size must be (H, W) with positive ints, got {size!r}.")
    return int(size[0]), int(size[1])


def _in_channels_of(segmenter: nn.Module) -> int:
    return int(segmenter.channel_adapter.in_channels)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class _eval:
    """Context: the module in eval mode (dropout off), its previous training mode restored after."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.modes = [(m, m.training) for m in module.modules()]

    def __enter__(self) -> nn.Module:
        self.module.eval()
        return self.module

    def __exit__(self, *exc: object) -> None:
        for m, training in self.modes:
            m.training = training
