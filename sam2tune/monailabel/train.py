"""Fine-tune a bundle on the labels submitted through the datastore, by running its train.json with overrides."""

from __future__ import annotations

import json
import logging
import os

import nibabel as nib
import numpy as np
from monai.bundle import ConfigWorkflow
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask
from PIL import Image

from sam2tune.monailabel.images import load_image, read_label
from sam2tune.monailabel.model import BundleModel
from sam2tune.utils.flags import as_bool

logger = logging.getLogger(__name__)

# Request keys a /train/<model> call may set, with their types (anything else is rejected by name).
TRAIN_KEYS = {"max_epochs": int, "learning_rate": float, "batch_size": int, "finetune": str, "label_tag": str, "val_interval": int,
              "amp": bool}


def training_datalist(datastore: Datastore, out_dir: str, label_tag: str = "final", num_labels: int = 1) -> list[dict]:
    """Labelled datastore images -> [{"image", "label", "id"}]; label copies in `out_dir`.

    Single-label bundles get binarised (> 0) copies: 2D labels as 0/255 PNGs (what the bundles' mask readers expect),
    3D labels as uint8 NIfTI. A 3D bundle with `num_labels` > 1 named labels (abdomen_ct_sam2's 13 organs) keeps the
    label values 1..num_labels, since each value is its own object to track; a value outside that range stops with
    the file named.
    """
    os.makedirs(out_dir, exist_ok=True)
    items = []
    for image_id in sorted(datastore.get_labeled_images(label_tag)):
        image_path = datastore.get_image_uri(image_id)
        label_path = datastore.get_label_uri(image_id, label_tag)
        image = load_image(image_path)
        label = read_label(label_path, image)
        if image.is_volume:
            if num_labels > 1:
                bad = sorted(set(np.unique(label).tolist()) - set(range(num_labels + 1)))
                if bad:
                    raise ValueError(f"Label {os.path.basename(label_path)} of image {image_id} holds values {bad[:5]} outside "
                                     f"0..{num_labels}: save it with the model's label values (GET /info/ lists them).")
                values = label.astype(np.uint8)
            else:
                values = (label > 0).astype(np.uint8)
            dest = os.path.join(out_dir, f"{image_id}.nii.gz")
            nib.save(nib.Nifti1Image(values, image.affine), dest)
        else:
            dest = os.path.join(out_dir, f"{image_id}.png")
            Image.fromarray((label > 0).astype(np.uint8) * 255).save(dest)
        items.append({"image": image_path, "label": dest, "id": image_id})
    return items


class SAM2BundleTrainTask(TrainTask):
    """Train task: the bundle's own train.json on the datastore's labels; writes <model_dir>/<bundle>/model.pt.

    Training resumes from the last fine-tuned model.pt when there is one (otherwise from the base checkpoint), so
    each round builds on the previous; the infer task hot-reloads the new file. Validation uses the same labels.
    """

    def __init__(self, model: BundleModel, labels: list[str] | None = None) -> None:
        super().__init__(f"Fine-tune {model.name} ({model.settings.finetune}) on submitted labels")
        self.model, self.num_labels = model, len(labels or [])
        s = model.settings
        self._config = {"max_epochs": s.max_epochs, "learning_rate": s.learning_rate, "batch_size": s.batch_size,
                        "finetune": s.finetune, "label_tag": "final", "val_interval": 1}

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

    def overrides(self, request: dict, datalist: list[dict]) -> dict:
        """Request + settings -> ConfigWorkflow overrides for the bundle's train.json."""
        cfg = self.config()
        for key, typ in TRAIN_KEYS.items():
            if key in request:
                try:
                    # {"amp": "false"} must mean False: bool("false") is True
                    cfg[key] = as_bool(request[key], f"train request {key}") if typ is bool else typ(request[key])
                except (TypeError, ValueError) as err:
                    raise ValueError(f"train request: {key}={request[key]!r} is not a {typ.__name__}.") from err
        s = self.model.settings
        base = self.model.model_path if os.path.isfile(self.model.model_path) else (s.pretrained_checkpoint or None)
        device = s.torch_device()
        return {
            **s.network_overrides(),
            "train#dataset#data": datalist,
            "validate#dataset#data": datalist,
            "ckpt_dir": self.model.ckpt_dir,
            "output_dir": self.output_dir,
            "pretrained_checkpoint": base,
            "finetune": cfg["finetune"],
            "max_epochs": cfg["max_epochs"],
            "learning_rate": cfg["learning_rate"],
            "batch_size": cfg["batch_size"],
            "val_interval": cfg["val_interval"],
            "num_workers": 0,
            "resume": False,
            "device": f"$torch.device('{device}')",
            "amp": bool(cfg["amp"]) and device.startswith("cuda") if "amp" in cfg else s.use_amp(device),
        }

    def __call__(self, request: dict, datastore: Datastore) -> dict:
        """Run one fine-tuning round (MONAI Label runs this in a background process) -> stats."""
        tag = request.get("label_tag", "final")
        datalist = training_datalist(datastore, os.path.join(self.model.ckpt_dir, "train_labels"), tag, self.num_labels)
        if not datalist:
            raise ValueError(f"No images labelled with tag {tag!r} yet: save labels (PUT /datastore/label) before training.")
        logger.info("Fine-tuning %s on %d labelled images", self.model.name, len(datalist))
        root = self.model.root
        wf = ConfigWorkflow(
            config_file=os.path.join(root, "configs", "train.json"),
            meta_file=os.path.join(root, "configs", "metadata.json"),
            logging_file=False,
            run_id="run",
            workflow_type=None,
            **self.overrides(request, datalist),
        )
        wf.initialize()
        wf.run()
        wf.finalize()
        return {"images": len(datalist), **self.stats()}
