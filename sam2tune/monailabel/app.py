"""Pieces monailabel_app/main.py wires: per-bundle tasks and the request guard for image ids."""

from __future__ import annotations

import json
import os
import tempfile

from monailabel.interfaces.datastore import Datastore

from sam2tune.monailabel.datastore import check_image_id
from sam2tune.monailabel.errors import not_found
from sam2tune.monailabel.infer import SAM2AutoInferTask, SAM2InferTask
from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.settings import AppSettings
from sam2tune.monailabel.train import SAM2BundleTrainTask


def bundle_dimension(model: BundleModel) -> int:
    """2 for bundles reading photos (inference.json loads JPEG/PNG), else 3."""
    return 2 if "LoadJPEGd" in json.dumps(model.parser.get("preprocessing")) else 3


def bundle_labels(name: str) -> list[str]:
    """Label names from the bundle's metadata.json `labels` (falls back to the bundle name's first words)."""
    from sam2tune.bundles import bundle_root

    try:
        with open(os.path.join(bundle_root(name), "configs", "metadata.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = {}
    labels = meta.get("labels")
    if isinstance(labels, dict):
        return [k for k, v in sorted(labels.items(), key=lambda kv: kv[1]) if k != "background"]
    if isinstance(labels, list) and labels:
        return [str(x) for x in labels if x != "background"]
    return ["_".join(name.split("_")[:2])]


def bundle_tasks(name: str, settings: AppSettings) -> tuple[dict, SAM2BundleTrainTask, BundleModel]:
    """Bundle -> ({infer name: task} (interactive, plus `<name>_auto` with a learned prompt), train task, MC-dropout model)."""
    model = BundleModel(name, settings)
    dim, labels = bundle_dimension(model), bundle_labels(name)
    infers = {name: SAM2InferTask(model, labels, dim, settings.threshold)}
    if model.has_learned_prompt:
        infers[f"{name}_auto"] = SAM2AutoInferTask(model, labels, dim, settings.threshold)
    return infers, SAM2BundleTrainTask(model), BundleModel(name, settings, dropout=settings.dropout)


def guard_infer_request(request: dict, infers: dict, datastore: Datastore) -> None:
    """404 for unknown models / image ids, 400 for ids that are paths; uploads (server temp files) pass."""
    model = request.get("model")
    if model not in infers:
        raise not_found(f"No infer model {model!r}; served models: {sorted(infers)} (see GET /info/).")
    image = request.get("image")
    if not isinstance(image, str):
        return
    # An uploaded file (POST /infer with `file`) arrives as a server temp file the endpoint just wrote.
    if os.path.dirname(image) == tempfile.gettempdir() and os.path.basename(image).startswith("tmp") and os.path.isfile(image):
        return
    check_image_id(image)
    if not datastore.get_image_uri(image):
        raise not_found(f"Image {image!r} is not in the datastore; list ids with GET /datastore/?output=all.")
