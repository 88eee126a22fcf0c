"""Local datastore that validates uploaded labels and keeps every earlier version of a label it replaces."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile

from monailabel.datastore.local import LocalDatastore

from sam2tune.monailabel.errors import bad_request, not_found
from sam2tune.monailabel.images import load_image, read_label

logger = logging.getLogger(__name__)

VERSIONS_DIR = "versions"


def check_image_id(image_id: str) -> None:
    """400 for ids that look like paths (they could leave the studies folder); datastore ids are plain names."""
    if not image_id or "/" in image_id or "\\" in image_id or image_id in (".", "..") or "\x00" in image_id:
        raise bad_request(
            f"Image id {image_id!r} is not a datastore id: ids are plain names, never paths (list them with GET "
            f"/datastore/)."
        )


def archived_versions(vdir: str, image_id: str) -> dict[int, str]:
    """{version: file name} of the archived labels of `image_id` in `vdir` (names `<id>.v<N><ext>`).

    Names are compared as plain strings (no glob: an id may hold '[', '*' or '?').

    Args:
        vdir: the versions folder.
        image_id: the image id.

    Returns:
        Every archived version found, by number.
    """
    pattern = re.compile(re.escape(image_id) + r"\.v(\d+)((?:\.[^.]+)*)$")
    out = {}
    for name in os.listdir(vdir) if os.path.isdir(vdir) else []:
        m = pattern.match(name)
        if m and not re.match(r"^\.v\d", m.group(2)):  # `<id>.v1.v2.png` is another id's archive
            out[int(m.group(1))] = name
    return out


def archive_label(old: str, image_id: str, version: int | None = None) -> tuple[int, str]:
    """Copy the label file `old` to `<its folder>/versions/<id>.v<N><ext>`, never overwriting an archived version.

    N is the highest archived version + 1 (or the label's own recorded `version`, when that is higher), so a
    deleted version never makes a later save overwrite an archived label. The copy is written to a temporary file
    and linked into place (link fails if the name exists: then the next number is taken), so a reader never sees
    a partial file.

    Args:
        old: the current label file.
        image_id: its image id.
        version: the version number recorded for the current label, if any.

    Returns:
        (version number given to the archived copy, its path).
    """
    vdir = os.path.join(os.path.dirname(old), VERSIONS_DIR)
    os.makedirs(vdir, exist_ok=True)
    ext = os.path.basename(old)[len(image_id):] if os.path.basename(old).startswith(image_id) else ""
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=vdir)
    try:
        with os.fdopen(fd, "wb") as out, open(old, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(old, tmp)
        n = max([0, *archived_versions(vdir, image_id)]) + 1
        if isinstance(version, int) and not isinstance(version, bool):
            n = max(n, version)
        while True:
            dest = os.path.join(vdir, f"{image_id}.v{n}{ext}")
            try:
                os.link(tmp, dest)  # atomic and exclusive: an existing version is never replaced
                return n, dest
            except FileExistsError:
                n += 1
    finally:
        os.remove(tmp)


def record_version(old: str | None, image_id: str, label_info: dict, old_info: dict | None = None) -> dict:
    """Archive the label being replaced (if any) and set `version` / `previous_version` in `label_info`.

    Args:
        old: path of the label about to be replaced ("" / None when there is none).
        image_id: the image id.
        label_info: the new label's info (a copy is returned).
        old_info: the replaced label's info (its recorded `version`, DICOM SEG series UID).

    Returns:
        The new label's info with `version` (archived version + 1, or 1) and, after a replacement,
        `previous_version` (the archived copy, relative to the label folder).
    """
    label_info = dict(label_info or {})
    old_info = old_info or {}
    if old and os.path.isfile(old):
        n, dest = archive_label(old, image_id, old_info.get("version"))
        label_info["previous_version"] = os.path.relpath(dest, os.path.dirname(old))
        label_info["version"] = n + 1
        if old_info.get("SeriesInstanceUID"):
            label_info["previous_SeriesInstanceUID"] = old_info["SeriesInstanceUID"]
        logger.info("Label %s: kept version %d as %s", image_id, n, dest)
    else:
        label_info["version"] = 1
    return label_info


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
        label_info = record_version(old, image_id, label_info, current_label_info(self, image_id, label_tag))
        return super().save_label(image_id, label_filename, label_tag, label_info)


def current_label_info(store: LocalDatastore, image_id: str, label_tag: str) -> dict:
    """The stored info of the image's current label with `label_tag` ({} when there is none).

    Args:
        store: a LocalDatastore (or subclass).
        image_id: the image id.
        label_tag: the tag.

    Returns:
        A copy of the label's info dict.
    """
    obj = store._datastore.objects.get(image_id)
    label = obj.labels.get(label_tag) if obj else None
    return dict(getattr(label, "info", None) or {})
