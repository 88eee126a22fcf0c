"""Local datastore that validates uploaded labels and keeps every earlier version of a label it replaces."""

from __future__ import annotations

import glob
import logging
import os
import shutil

from monailabel.datastore.local import LocalDatastore

from sam2tune.monailabel.errors import bad_request, not_found
from sam2tune.monailabel.images import load_image, read_label

logger = logging.getLogger(__name__)

VERSIONS_DIR = "versions"


def check_image_id(image_id: str) -> None:
    """400 for ids that look like paths (they could leave the studies folder); datastore ids are plain names."""
    if not image_id or "/" in image_id or "\\" in image_id or image_id in (".", "..") or "\x00" in image_id:
        raise bad_request(f"Image id {image_id!r} is not a datastore id: ids are plain names, never paths (list them with GET /datastore/).")


class VersionedLocalDatastore(LocalDatastore):
    """LocalDatastore whose `save_label` rejects unusable uploads (4xx) and archives the label it overwrites."""

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict) -> str:
        """Validate (known image, readable, same size) -> archive the old version -> save; returns the label id."""
        check_image_id(image_id)
        if not self._datastore.objects.get(image_id):
            raise not_found(f"Image {image_id!r} is not in the datastore; upload it first (PUT /datastore/image).")
        if label_tag and ("/" in label_tag or "\\" in label_tag or label_tag.startswith(".")):
            raise bad_request(f"Label tag {label_tag!r} must be a plain name.")
        image = load_image(self.get_image_uri(image_id))
        read_label(label_filename, image)  # raises 422 naming the file when it cannot be used
        old = self.get_label_uri(image_id, label_tag)
        label_info = dict(label_info or {})
        if old and os.path.isfile(old):
            vdir = os.path.join(os.path.dirname(old), VERSIONS_DIR)
            os.makedirs(vdir, exist_ok=True)
            n = len(glob.glob(os.path.join(vdir, f"{image_id}.v*"))) + 1
            name = os.path.basename(old)
            dest = os.path.join(vdir, f"{image_id}.v{n}{name[len(image_id):]}")
            shutil.copy2(old, dest)
            label_info["previous_version"] = os.path.relpath(dest, os.path.dirname(old))
            label_info["version"] = n + 1
            logger.info("Label %s/%s: kept previous version as %s", label_tag, image_id, dest)
        else:
            label_info["version"] = 1
        return super().save_label(image_id, label_filename, label_tag, label_info)
