"""Fine-tune a bundle on the labels submitted through the datastore, by running its train.json with overrides."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask
from PIL import Image

from sam2tune.bundles import run_workflow
from sam2tune.monailabel.errors import bad_request, not_found
from sam2tune.monailabel.images import is_photo, load_image, read_label
from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.validation import TRAIN_BOOKKEEPING, TRAIN_SPECS, InputError, check_device, check_mapping

logger = logging.getLogger(__name__)

# Request keys a /train/<model> call may set (anything else is refused by name): the typed whitelist.
TRAIN_KEYS = TRAIN_SPECS
# Keys MONAI Label itself puts into the request it hands the trainer: `model` (the trainer name; "gpus" is in
# TRAIN_SPECS) and, for the deprecated POST /train/ of all models, one {trainer name: body} entry per trainer.
_MONAILABEL_KEYS = ("model",)


def check_train_request(request: dict, trainers: Mapping[str, object]) -> dict:
    """A train request (MONAI Label's `{"model": name, **body}`) -> the checked body values; HTTP 4xx otherwise.

    Every key must be a TRAIN_KEYS key (or MONAI Label's own `model`); each value is checked against its Spec
    (enums against their values, numbers against their range, booleans by as_bool, strings a bundle config could
    evaluate refused). Runs in the server before a training process starts, and again in that process.

    Args:
        request: the request dict; `model` names the trainer.
        trainers: trainer name -> task (only the names are used).

    Returns:
        {key: typed value} of the body keys given.

    Raises:
        HTTPException: 404 for an unknown model, 400 naming the key and its allowed values for a bad one.
    """
    if not isinstance(request, Mapping):
        raise bad_request(
            f"train request: expected a JSON object, got {type(request).__name__}; allowed keys: {sorted(TRAIN_KEYS)}."
        )
    model = request.get("model")
    if model not in trainers:
        raise not_found(f"No trainer {model!r}; trainers: {sorted(trainers)} (see GET /info/).")
    # POST /train/ (all models) merges {trainer: body} into every request: those entries are checked as bodies
    body = {k: v for k, v in request.items() if not (k in trainers and k not in TRAIN_KEYS)}
    for name in (k for k in request if k in trainers and k not in TRAIN_KEYS):
        if request[name] is not None:
            check_train_request({**(request[name] if isinstance(request[name], Mapping) else {"body": request[name]}),
                                 "model": name}, trainers)
    try:
        return check_mapping(body, TRAIN_KEYS, f"train request for {model}:", ignore=_MONAILABEL_KEYS,
                             hidden=TRAIN_BOOKKEEPING)
    except InputError as err:
        raise bad_request(str(err)) from None


def _plain_items(items: list[dict], where: str) -> list[dict]:
    """`items` unchanged once no string in them would be evaluated by a bundle config (they go in as an override).

    A datalist is parsed like the rest of the config: an id or path starting with '$', '@' or '%' would run as
    code or resolve as a reference. Datastore paths are absolute; ids are file names, which a client chooses.
    """
    for item in items:
        for key, value in item.items():
            if isinstance(value, str) and value.lstrip().startswith(("$", "@", "%")):
                raise ValueError(f"{where}: {key} {value!r} of image {item.get('id')!r} starts with '$', '@' or '%', "
                                 "which the bundle config would evaluate; rename the image in the datastore.")
    return items


def training_datalist(datastore: Datastore, out_dir: str, label_tag: str = "final", num_labels: int = 1,
                      dimension: int | None = None) -> list[dict]:
    """Labelled datastore images -> [{"image", "label", "id"}]; label copies in `out_dir`.

    Single-label bundles get binarised (> 0) copies: 2D labels as 0/255 PNGs (what the bundles' mask readers expect),
    3D labels as uint8 NIfTI. A 3D bundle with `num_labels` > 1 named labels (abdomen_ct_sam2's 13 organs) keeps the
    label values 1..num_labels, since each value is its own object to track; a value outside that range stops with
    the file named.

    Args:
        datastore: the app's datastore.
        out_dir: where the label copies go.
        label_tag: which labels to train on.
        num_labels: the bundle's label count.
        dimension: 2 (photos) or 3 (volumes): images of the other kind are left out (one datastore may serve
            2D and 3D bundles); None keeps every image.

    Returns:
        One item per usable labelled image, sorted by id.
    """
    os.makedirs(out_dir, exist_ok=True)
    items = []
    for image_id in sorted(datastore.get_labeled_images(label_tag)):
        image_path = datastore.get_image_uri(image_id)
        if dimension is not None and is_photo(image_path) != (dimension == 2):
            logger.info("Training datalist: %s left out (a %s; this bundle reads %s)", image_id,
                        "photo" if is_photo(image_path) else "volume", "photos" if dimension == 2 else "volumes")
            continue
        label_path = datastore.get_label_uri(image_id, label_tag)
        image = load_image(image_path)
        label = read_label(label_path, image)
        if image.is_volume:
            if num_labels > 1:
                bad = sorted(set(np.unique(label).tolist()) - set(range(num_labels + 1)))
                if bad:
                    raise ValueError(
                        f"Label {os.path.basename(label_path)} of image {image_id} holds values {bad[:5]} outside "
                        f"0..{num_labels}: save it with the model's label values (GET /info/ lists them)."
                    )
                values = label.astype(np.uint8)
            else:
                values = (label > 0).astype(np.uint8)
            dest = os.path.join(out_dir, f"{image_id}.nii.gz")
            nib.save(nib.Nifti1Image(values, image.affine), dest)
        else:
            dest = os.path.join(out_dir, f"{image_id}.png")
            Image.fromarray((label > 0).astype(np.uint8) * 255).save(dest)
        items.append({"image": image_path, "label": dest, "id": image_id})
    return _plain_items(items, "training datalist")


def label_format(train_config: dict) -> str:
    """What a bundle's train.json reads as labels, from its `load_transforms`: "rle", "slices" or "files".

    "rle": Kaggle run-length strings (DecodeRLEd, steel_defect_sam2); "slices": 2D .npy slices of volumes
    (NumpyReader, knee_cartilage_mri_sam2); "files": an image + label file per item (the other bundles).
    """
    text = json.dumps(train_config.get("load_transforms", []))
    if "DecodeRLEd" in text:
        return "rle"
    if "NumpyReader" in text:
        return "slices"
    return "files"


def rle_items(items: list[dict]) -> list[dict]:
    """Photo items with 0/255 PNG labels -> the Severstal reader's items {"image", "rle", "class_id", "id", "shape"}.

    The mask becomes a run-length string (1-based, column-major, as train.csv holds it) of defect class 1 (the
    value the served `steel_defect` label writes); images whose label is empty are left out (train.csv has no row
    for a defect-free image).
    """
    from sam2tune.data.severstal import rle_encode

    out = []
    for item in items:
        with Image.open(item["label"]) as im:
            mask = np.asarray(im.convert("L")) > 0
        if not mask.any():
            logger.info("Training datalist: %s left out (empty label: no defect to learn)", item["id"])
            continue
        out.append({"image": item["image"], "rle": rle_encode(mask), "class_id": 1, "id": f"{item['id']}_c1",
                    "shape": list(mask.shape)})
    return out


def slice_items(items: list[dict], out_dir: str, mode: str = "train") -> list[dict]:
    """Volume items -> the knee reader's 2D slice items, slices written as .npy under `out_dir/<id>/`.

    Same files and keys as sam2tune.data.knee.knee_slice_datalist: image slices (rows, columns) scaled by
    normalize_intensity over the volume, label slices float32 of the label values. Mode "train": one item per slice
    holding a label; "eval": one item per (slice, label value, connected instance) with "class_id" and "instance".
    """
    from sam2tune.data.knee import normalize_intensity
    from sam2tune.prompts.simulate import connected_instances

    out = []
    for item in items:
        volume = normalize_intensity(_raw_volume(item["image"]))
        label = np.asarray(nib.load(item["label"]).dataobj)
        sdir = os.path.join(out_dir, item["id"])
        os.makedirs(sdir, exist_ok=True)
        for k in range(volume.shape[2]):
            lab = label[:, :, k].T.astype(np.float32)  # (J, I): rows, columns, as the reader's DICOM slices
            if not lab.any():
                continue
            img_path, lab_path = os.path.join(sdir, f"img_{k:04d}.npy"), os.path.join(sdir, f"lab_{k:04d}.npy")
            _save_npy(img_path, np.ascontiguousarray(volume[:, :, k].T))
            _save_npy(lab_path, np.ascontiguousarray(lab))
            base = {"image": img_path, "label": lab_path, "subject": item["id"], "slice": k}
            if mode == "train":
                out.append({**base, "id": f"{item['id']}_s{k:03d}"})
                continue
            for t in sorted(int(v) for v in np.unique(lab) if v > 0):
                for n, _ in enumerate(connected_instances(lab == t)):
                    out.append({**base, "id": f"{item['id']}_s{k:03d}_t{t}_i{n}", "class_id": t, "instance": n})
    return out


def _raw_volume(path: str) -> np.ndarray:
    """A datastore volume as float32 (I, J, K), unscaled (the knee reader scales by percentiles itself)."""
    from monai.transforms import LoadImage

    arr = np.asarray(LoadImage(image_only=True)(path), dtype=np.float32)
    return arr[..., None] if arr.ndim == 2 else arr


def _save_npy(path: str, array: np.ndarray) -> None:
    """np.save through a temporary file and a rename (a reader never sees half a slice)."""
    tmp = f"{path}.{os.getpid()}.tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


class SAM2BundleTrainTask(TrainTask):
    """Train task: the bundle's own train.json on the datastore's labels; writes <model_dir>/<bundle>/model.pt.

    Training resumes from the last fine-tuned model.pt when there is one (otherwise from the base checkpoint), so
    each round builds on the previous; the infer task hot-reloads the new file. Validation uses the same labels.
    Datastore labels are mapped into what the bundle's train.json reads (label_format): label files, run-length
    strings (steel_defect_sam2) or 2D .npy slices of the volumes (knee_cartilage_mri_sam2). The bundle keeps its
    own val_interval unless the request sets one.

    Args:
        model: the bundle's server model.
        labels: the bundle's label names (their count decides whether 3D label values are kept or binarised).
        dimension: 2 (the bundle reads photos) or 3 (volumes); other images in the datastore are left out.
    """

    def __init__(self, model: BundleModel, labels: list[str] | None = None, dimension: int | None = None) -> None:
        super().__init__(f"Fine-tune {model.name} ({model.settings.finetune}) on submitted labels")
        self.model, self.num_labels, self.dimension = model, len(labels or []), dimension
        with open(os.path.join(model.root, "configs", "train.json")) as f:
            self.train_config = json.load(f)
        self.label_format = label_format(self.train_config)
        s = model.settings
        self._config = {"max_epochs": s.max_epochs, "learning_rate": s.learning_rate, "batch_size": s.batch_size,
                        "finetune": s.finetune, "label_tag": "final"}
        own_interval = self.train_config.get("val_interval")
        if isinstance(own_interval, int) and not isinstance(own_interval, bool):
            self._config["val_interval"] = own_interval  # shown as the bundle's own value, not forced

    def config(self) -> dict:
        """Defaults shown in /info/ and overridable per request."""
        return dict(self._config)

    @property
    def output_dir(self) -> str:
        """Where training_history.json and curves go."""
        return os.path.join(self.model.ckpt_dir, "train_output")

    def stats(self) -> dict:
        """Last epoch record of training_history.json (empty before the first run)."""
        path = os.path.join(self.output_dir, "training_history.json")
        try:
            with open(path) as f:
                history = json.load(f)
        except (OSError, ValueError):
            return {}
        records = history.get("epochs", history) if isinstance(history, dict) else history
        return {"epochs_run": len(records), "last": records[-1] if records else None, "model": self.model.model_path}

    def checked_request(self, request: dict) -> dict:
        """The request's TRAIN_KEYS values, typed and checked (InputError, a ValueError, naming a bad key)."""
        return check_mapping(request, TRAIN_KEYS, f"train request for {self.model.name}:", ignore=_MONAILABEL_KEYS,
                             hidden=TRAIN_BOOKKEEPING)

    def overrides(self, request: dict, datalist: list[dict], val_datalist: list[dict] | None = None) -> dict:
        """Request + settings -> ConfigWorkflow overrides for the bundle's train.json.

        Args:
            request: the train request (checked here again: unknown keys and bad values raise InputError).
            datalist: training items in the bundle's own format.
            val_datalist: validation items (default: `datalist`).

        Returns:
            {config id: value}; only typed values from the whitelist and paths from the settings.
        """
        given = self.checked_request(request)
        cfg = {**self.config(), **given}
        s = self.model.settings
        base = self.model.model_path if os.path.isfile(self.model.model_path) else (s.pretrained_checkpoint or None)
        device = check_device(s.torch_device())  # strict 'cpu' | 'cuda' | 'cuda:N' before it is formatted into code
        out = {
            **s.network_overrides(),
            "train#dataset#data": datalist,
            "validate#dataset#data": datalist if val_datalist is None else val_datalist,
            "ckpt_dir": self.model.ckpt_dir,
            "output_dir": self.output_dir,
            "pretrained_checkpoint": base,
            "finetune": cfg["finetune"],
            "max_epochs": cfg["max_epochs"],
            "learning_rate": cfg["learning_rate"],
            "batch_size": cfg["batch_size"],
            "num_workers": 0,
            "resume": False,
            "device": f"$torch.device('{device}')",
            "amp": bool(given["amp"]) and device.startswith("cuda") if "amp" in given else s.use_amp(device),
        }
        for key in ("val_interval", "correction_rounds", "first_prompt"):  # otherwise the bundle's own values
            if key in given:
                out[key] = given[key]
        return out

    def datalists(self, datastore: Datastore, label_tag: str) -> tuple[list[dict], list[dict]]:
        """Datastore labels -> (train items, validation items) in the format the bundle's train.json reads."""
        items = training_datalist(datastore, os.path.join(self.model.ckpt_dir, "train_labels"), label_tag,
                                  self.num_labels, self.dimension)
        kind = "photos" if self.dimension == 2 else "volumes" if self.dimension == 3 else "images"
        if not items:
            raise ValueError(f"No {kind} labelled with tag {label_tag!r} yet for {self.model.name}: save labels "
                             "(PUT /datastore/label) before training.")
        if self.label_format == "rle":
            train = val = rle_items(items)
        elif self.label_format == "slices":
            out_dir = os.path.join(self.model.ckpt_dir, "train_slices")
            train, val = slice_items(items, out_dir, "train"), slice_items(items, out_dir, "eval")
        else:
            train = val = items
        if not train:
            raise ValueError(f"The {len(items)} labelled {kind} for {self.model.name} hold no labelled pixels; "
                             "save labels with the object drawn before training.")
        return _plain_items(train, "training datalist"), _plain_items(val, "validation datalist")

    def __call__(self, request: dict, datastore: Datastore) -> dict:
        """Run one fine-tuning round (MONAI Label runs this in a background process) -> stats."""
        given = self.checked_request(request)  # before any file is written
        tag = given.get("label_tag", "final")
        train, val = self.datalists(datastore, tag)
        logger.info(
            "Fine-tuning %s on %d items (%s labels, tag %s)", self.model.name, len(train), self.label_format, tag
        )
        run_workflow(Path(self.model.root), ["train"], **self.overrides(request, train, val))
        return {"images": len({i.get("subject", i["id"]) for i in train}), "items": len(train), **self.stats()}
