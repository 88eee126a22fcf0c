"""YOLO-seg baseline: the hook exists, the adapter does not yet; `--model yolo` stops here with the reason.

What was checked (ultralytics 8.4.190, Python 3.11, this machine): it installs from PyPI in ~12 s next to the pinned
stack (adds opencv-python 4.11, polars, ultralytics-thop, ultralytics-platform; numpy stays 1.26.4) and
`YOLO("yolov8n-seg.yaml")` builds a 3.4 M-parameter SegmentationModel offline with YOLO_OFFLINE=1 and
YOLO_CONFIG_DIR set to a writable folder. What is missing is the bridge into a bundle's MONAI trainer: YOLO-seg
learns instances (boxes + prototype masks, its own v8SegmentationLoss on per-instance targets) and predicts
instances after NMS, while the bundle trains and scores one semantic logit map. Its own trainer would bypass the
bundle's readers, split and evaluation, which would make the comparison unfair, so no YOLO row is reported.
"""

from __future__ import annotations

YOLO_GAP = (
    "--model yolo is not available: ultralytics installs and builds YOLO-seg offline, but sam2tune has no adapter yet "
    "that trains it inside the bundle's MONAI trainer (instance targets from the label map, v8SegmentationLoss) and "
    "turns its NMS-filtered instance masks into the semantic logits the bundle's evaluation scores. "
    "See docs/baselines.md ('YOLO-seg'); use --model resnet or sam2."
)


def yolo_overrides(bundle: str, prompt: str = "box", evaluate: bool = False, distributed: bool = False) -> dict:
    """Bundle overrides for a YOLO-seg network -> always raises NotImplementedError naming what is missing."""
    raise NotImplementedError(YOLO_GAP)
