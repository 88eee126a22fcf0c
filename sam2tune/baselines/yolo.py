"""YOLO-seg baseline (ultralytics, built from its model YAML, no downloaded weights) inside a bundle's MONAI trainer.

The bundle trains and scores one semantic logit map; YOLO-seg learns instances. The bridge, so that the bundle's
readers, split, schedule and evaluation stay the bundle's own:
- training: `YOLOSegBaseline` in train mode returns ultralytics' raw head outputs (dict); `YOLOSegLoss(pred, label)`
  turns the bundle's binary label into instance targets (connected components -> normalised xywh boxes + an
  instance-index mask, ultralytics' `overlap_mask` format) and applies ultralytics' own `v8SegmentationLoss`.
- evaluation: in eval mode the network returns (B, 1, H, W) logits: NMS-filtered instances above `conf_threshold`,
  each instance's mask logits kept inside its box, their pixel-wise max (the union of the instance masks),
  upsampled to the input size; pixels no kept instance covers get a large negative logit.
ultralytics is imported with YOLO_OFFLINE=1 and YOLO_CONFIG_DIR in a temp folder so it never reaches the network.
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from sam2tune.baselines.prompt_channel import network_input
from sam2tune.baselines.resnet_unet import load_baseline_checkpoint

logger = logging.getLogger(__name__)
ULTRALYTICS_PIN = "ultralytics==8.4.190"
# Logit for pixels outside every kept instance: finite (sigmoid ~2e-9), so interpolation and metrics stay NaN-free.
BACKGROUND_LOGIT = -20.0


def _ultralytics():
    """Import ultralytics offline (env set first: it reads YOLO_* at import) -> the module; clear error if absent."""
    os.environ["YOLO_OFFLINE"] = "1"  # is_online() -> False: no hub/font/weights/telemetry requests
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")  # never pip-install missing requirements at run time
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if not os.environ.get("YOLO_CONFIG_DIR"):  # its settings.json would otherwise go to ~/.config (maybe read-only)
        # one folder per user, reused by every process (a fresh mkdtemp per process would pile up in the temp dir)
        config_dir = os.path.join(tempfile.gettempdir(),
                                  f"sam2tune_yolo_cfg_{os.getuid() if hasattr(os, 'getuid') else 'user'}")
        os.makedirs(config_dir, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = config_dir
    try:
        import ultralytics
        import ultralytics.utils.loss  # noqa: F401  (loaded here so callers get one import error, not two)
        import ultralytics.utils.nms  # noqa: F401
    except ImportError as e:
        raise ImportError(f"--model yolo needs ultralytics: pip install {ULTRALYTICS_PIN} "
                          f"(listed in requirements.txt); import failed with: {e}") from e
    return ultralytics


def label_to_yolo_targets(label: torch.Tensor, mask_size: tuple[int, int]) -> dict:
    """(B, 1, H, W) binary label -> ultralytics batch dict: batch_idx (N,), cls (N, 1), bboxes (N, 4) normalised xywh,
    masks (B, h, w) with k+1 marking image b's k-th instance (`overlap_mask` format), at `mask_size`.

    Instances are 8-connected components of label > 0.5 at the label's own resolution; all get class 0.
    """
    if label.ndim != 4 or label.shape[1] != 1:
        raise ValueError(f"YOLOSegLoss expects a (B, 1, H, W) binary label, got shape {tuple(label.shape)}; a "
                         f"multi-class label needs a bundle with one foreground class (out_channels 1).")
    b, _, h, w = label.shape
    fg = (label.detach()[:, 0] > 0.5).cpu().numpy()
    index_maps = np.zeros((b, h, w), dtype=np.int32)
    rows = []
    for i in range(b):
        comps, n = ndimage.label(fg[i], structure=np.ones((3, 3), dtype=bool))
        index_maps[i] = comps  # ndimage numbers components 1..n in scan order == target order below
        for sl in ndimage.find_objects(comps):
            y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop  # stop is exclusive: pixel edges
            rows.append([i, 0.0, (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h])
    table = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    masks = torch.from_numpy(index_maps).float()[:, None]
    if tuple(mask_size) != (h, w):  # nearest keeps instance indices intact (ultralytics' mask_ratio downsampling)
        masks = F.interpolate(masks, size=tuple(mask_size), mode="nearest")
    dev = label.device
    return {"batch_idx": table[:, 0].to(dev), "cls": table[:, 1:2].to(dev), "bboxes": table[:, 2:6].to(dev),
            "masks": masks[:, 0].to(dev)}


class YOLOSegBaseline(nn.Module):
    """YOLO-seg (ultralytics SegmentationModel from `model_yaml`, random init) with SAM2Segmenter's call signature.

    Args:
        image_size: square network input (multiple of 32); other input sizes are resized to it and back.
        in_channels: image channels (1 for CT/MR, 3 for RGB).
        out_channels: must be 1 (one foreground class, as the bundle's binary label).
        model_yaml: an ultralytics model YAML name or path (e.g. yolov8n-seg.yaml, yolo11n-seg.yaml); no weights.
        prompt_channel: True = the box prompt is rasterised into one extra input channel (fair against SAM2 with
            a box); False = prompt-free.
        conf_threshold / iou_threshold / max_det: ultralytics' predict-time NMS settings for the eval-mode output.
        bn_momentum: BatchNorm momentum; ultralytics sets 0.03 for its runs of hundreds of epochs. At a bundle's short
            budgets the running statistics then lag the weights and the eval-mode scores collapse below
            conf_threshold (measured: 0.01 max confidence after 60 steps on a toy batch that train mode fits at 0.99),
            so 0.1 (PyTorch's default, as in the ResNet U-Net) is used; None keeps ultralytics' value.
        pretrained_checkpoint: a model.pt written by the bundle's ModelExport for this class, or None.
    """

    def __init__(self, image_size: int = 1024, in_channels: int = 3, out_channels: int = 1,
                 model_yaml: str = "yolov8n-seg.yaml", prompt_channel: bool = True, conf_threshold: float = 0.25,
                 iou_threshold: float = 0.7, max_det: int = 100, bn_momentum: float | None = 0.1,
                 pretrained_checkpoint: str | None = None, **unused: object) -> None:
        super().__init__()
        if image_size % 32:
            raise ValueError(
                f"image_size must be a multiple of 32 for YOLO-seg (its largest stride), got {image_size}."
            )
        if out_channels != 1:
            raise ValueError(
                f"YOLOSegBaseline predicts one foreground class; out_channels must be 1, got {out_channels}."
            )
        if unused:  # SAM2-only settings (variant, dropout, ...) may arrive from a bundle's network_def
            logger.debug("YOLOSegBaseline ignores settings %s", sorted(unused))
        _ultralytics()
        from ultralytics.cfg import get_cfg
        from ultralytics.nn.tasks import SegmentationModel
        from ultralytics.utils import DEFAULT_CFG

        self.image_size, self.prompt_channel = int(image_size), bool(prompt_channel)
        self.conf_threshold, self.iou_threshold, self.max_det = (float(conf_threshold), float(iou_threshold),
                                                                 int(max_det))
        try:
            self.model = SegmentationModel(model_yaml, ch=in_channels + int(self.prompt_channel), nc=1, verbose=False)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"YOLO model YAML {model_yaml!r} not found: use a name ultralytics ships "
                                    f"(yolov8n-seg.yaml, yolo11n-seg.yaml, ...) or a path to a YAML file.") from e
        # v8SegmentationLoss reads its gains (box 7.5, cls 0.5, dfl 1.5) and overlap_mask from model.args
        self.model.args = get_cfg(DEFAULT_CFG)
        if bn_momentum is not None:
            for m in self.model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = float(bn_momentum)
        if pretrained_checkpoint:
            load_baseline_checkpoint(self, pretrained_checkpoint)

    def forward(self, image: torch.Tensor, boxes: torch.Tensor | None = None, **prompts: torch.Tensor | None):
        """(B, C, H, W) image in [0, 1] [+ (B, 4) xyxy boxes] -> train mode: ultralytics' raw output dict (for
        YOLOSegLoss); eval mode: (B, 1, H, W) semantic logits (union of the kept instance masks)."""
        out = self.model(network_input(image, boxes, self.prompt_channel, self.image_size, "YOLOSegBaseline"))
        if self.training:
            return out
        y, proto = out[0]  # eval: ((decoded (B, 4+nc+nm, A), proto (B, nm, h/4, w/4)), raw dict)
        return self.semantic_logits(y, proto, tuple(image.shape[-2:]))

    def semantic_logits(self, y: torch.Tensor, proto: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Decoded predictions (B, 4+1+nm, A) + prototypes (B, nm, h, w) -> (B, 1, *size) logits after NMS."""
        from ultralytics.utils.nms import non_max_suppression

        # max_time_img: ultralytics stops NMS after 0.05 s per image by default, which a slow CPU can hit
        dets = non_max_suppression(y, self.conf_threshold, self.iou_threshold, nc=1, max_det=self.max_det,
                                   max_time_img=60.0)
        s = self.image_size
        ys = torch.arange(s, device=y.device, dtype=proto.dtype).view(1, s, 1) + 0.5
        xs = torch.arange(s, device=y.device, dtype=proto.dtype).view(1, 1, s) + 0.5
        out = torch.full((len(dets), 1, s, s), BACKGROUND_LOGIT, device=y.device, dtype=proto.dtype)
        for i, det in enumerate(dets):
            if not len(det):
                continue
            coef = det[:, 6:].to(proto.dtype)
            logits = torch.einsum("nc,chw->nhw", coef, proto[i])[None]
            logits = F.interpolate(logits, size=(s, s), mode="bilinear", align_corners=False)[0]
            x0, y0, x1, y1 = (det[:, k].to(proto.dtype).view(-1, 1, 1) for k in range(4))
            inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)  # YOLO crops each mask to its box
            logits = torch.where(inside, logits, torch.full_like(logits, BACKGROUND_LOGIT))
            out[i, 0] = logits.max(dim=0).values
        if tuple(size) != (s, s):
            out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out


class YOLOSegLoss(nn.Module):
    """`loss_function(pred, label)` for the bundle's SupervisedTrainer: ultralytics' v8SegmentationLoss on instance
    targets from the binary label; returns the summed (box, seg, cls, dfl) loss per image (a scalar).

    Args:
        network: the YOLOSegBaseline being trained (not a DDP wrapper: ultralytics reads the bare head).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        network = getattr(network, "module", network)
        if not isinstance(network, YOLOSegBaseline):
            raise TypeError(f"YOLOSegLoss needs the YOLOSegBaseline network, got {type(network).__name__}.")
        self._net = [network]  # a list, so the network's parameters are not registered twice as this loss's
        self._criterion = None
        self.last_items: dict[str, float] = {}

    def forward(self, pred, label: torch.Tensor) -> torch.Tensor:
        """pred: YOLOSegBaseline's train-mode output dict; label: (B, 1, H, W) binary -> scalar loss."""
        if not isinstance(pred, dict) or "proto" not in pred:
            raise TypeError("YOLOSegLoss needs YOLOSegBaseline's train-mode outputs (a dict with 'proto'); got "
                            f"{type(pred).__name__}. Call it in training only (network.train()).")
        from ultralytics.utils.loss import v8SegmentationLoss

        net = self._net[0]
        device = pred["proto"].device
        if self._criterion is None or self._criterion.device != device:  # built lazily: after .to(device)
            self._criterion = v8SegmentationLoss(net.model)
        s = net.image_size
        if tuple(label.shape[-2:]) != (s, s):  # targets live in the network's input pixels
            label = F.interpolate(label.float(), size=(s, s), mode="nearest")
        batch = label_to_yolo_targets(label, tuple(pred["proto"].shape[-2:]))
        loss, items = self._criterion(pred, batch)
        self.last_items = {k: float(v) for k, v in items.items()}
        return loss.sum() / label.shape[0]  # ultralytics returns (loss components) x batch size


def yolo_overrides(bundle: str, prompt: str = "box", evaluate: bool = False, distributed: bool = False,
                   model_yaml: str = "yolov8n-seg.yaml") -> dict:
    """ConfigWorkflow overrides that put YOLO-seg into the bundle: network, its loss, optimizer params, prompts.

    The trainer's postprocessing and train Dice are switched off: in train mode the network returns ultralytics'
    raw outputs, not a logit map. Validation and evaluation (eval mode) use the bundle's own metrics unchanged.
    """
    from sam2tune.baselines.workflow import bundle_value

    _ultralytics()  # fail before any data is loaded if ultralytics is missing
    network_def = {
        "_target_": "sam2tune.baselines.YOLOSegBaseline",
        "image_size": "@image_size",
        "in_channels": bundle_value(bundle, "network_def#in_channels", 3),
        "out_channels": 1,
        "model_yaml": model_yaml,
        "prompt_channel": prompt == "box",
        "pretrained_checkpoint": "$@ckpt_dir + '/model.pt'" if evaluate else None,
    }
    over = {"network_def": network_def, "prepare_batch#prompts": ["boxes"] if prompt == "box" else [],
            "loss": {"_target_": "sam2tune.baselines.YOLOSegLoss", "network": "@network_def"},
            "train#trainer#postprocessing": None, "train#trainer#key_train_metric": None}
    net_key = "network#module" if distributed else "network"
    over[net_key] = "$@network_def.to(@device)"
    inner = "@network.module" if distributed else "@network"
    over["optimizer#params"] = f"$sam2tune.finetune.param_groups({inner}, @learning_rate, 1.0, @weight_decay)"
    return over
