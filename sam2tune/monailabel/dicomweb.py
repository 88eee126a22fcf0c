"""DICOMweb datastore (Orthanc, DCM4CHEE, Google Healthcare) that works offline: no dcmqi, SEG via pydicom-seg.

MONAI Label 0.8.5 downloads dcmqi from GitHub when a DICOMweb datastore starts and writes DICOM SEG with dcmqi's
`itkimage2segimage`. This subclass keeps its series download / NIfTI caching and replaces only the SEG write-back:
the label is resampled onto the source series grid with SimpleITK, written with `sam2tune.io.write_dicom_seg`
(pydicom-seg) and uploaded by STOW-RS.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from monailabel.datastore.dicom import DICOMwebClientX, DICOMWebDatastore
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag

from sam2tune.io.dicom_seg import write_dicom_seg
from sam2tune.monailabel.datastore import check_image_id, current_label_info, record_version
from sam2tune.monailabel.errors import bad_request, not_found, unprocessable
from sam2tune.monailabel.images import load_image, read_label

logger = logging.getLogger(__name__)


def segment_names(label_info: dict, labels: list[int]) -> dict[int, str]:
    """Names for the label values present: from `label_names` {name: value} (what our infer returns) or OHIF's
    `label_info` [{"name", "idx"?}, ...] (i-th entry = i-th label, as MONAI Label's own SEG writer reads it)."""
    names: dict[int, str] = {}
    by_name = label_info.get("label_names")
    if isinstance(by_name, dict):
        names.update({int(v): str(k) for k, v in by_name.items()})
    entries = label_info.get("label_info")
    if isinstance(entries, list):
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("name"):
                value = int(entry.get("idx", labels[i] if i < len(labels) else i + 1))
                names.setdefault(value, str(entry["name"]))
    return {v: names.get(v, f"segment_{v}") for v in labels}


def label_on_series(label_path: str, series_files: list[str]) -> np.ndarray:
    """Label file (NIfTI/NRRD in patient space) -> (D, H, W) label map on the series grid,
    slices in `series_files` order."""
    reference = sitk.ReadImage(series_files)
    label = sitk.ReadImage(label_path)
    if label.GetDimension() != 3:
        raise unprocessable(
            f"Label {os.path.basename(label_path)} is {label.GetDimension()}D; a DICOM series needs a 3D label."
        )
    # Nearest neighbour in physical space: the uploaded label may carry any orientation the client saved it in.
    resampled = sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16)
    return sitk.GetArrayFromImage(resampled)


def seg_on_series(files: list[str], label_path: str, label_info: dict, out: str, what: str) -> list[int]:
    """Label file (patient space) -> DICOM SEG at `out` referencing the series `files`; returns the label values.

    Args:
        files: the series' DICOM files, sorted along the slice normal.
        label_path: the label (NIfTI/NRRD) in any orientation; resampled nearest-neighbour onto the series grid.
        label_info: segment names, as `segment_names` reads them; `model` is the SEG's series description.
        out: where the SEG is written.
        what: the label's owner, for the message when it is empty.

    Returns:
        The label values stored as segments (sorted).
    """
    label_map = label_on_series(label_path, files)
    labels = sorted(int(v) for v in np.unique(label_map) if v != 0)
    if not labels:
        raise unprocessable(
            f"Label {os.path.basename(label_path)} for {what} is empty: a DICOM SEG needs at least one segment."
        )
    write_dicom_seg(label_map, files, out, segment_names(label_info, labels),
                    series_description=str(label_info.get("model") or "sam2tune"))
    return labels


def cached_series_files(image_dir: str, series_uid: str = "") -> list[str]:
    """The DICOM files of a cached series folder, sorted along the slice normal (GDCM's order); 404 when empty.

    Args:
        image_dir: the series' folder in MONAI Label's DICOMweb cache.
        series_uid: read only this series when the folder holds it (else every file of the folder).
    """
    files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(image_dir, series_uid)) if series_uid else []
    files = files or list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(image_dir))
    if not files:
        raise not_found(
            f"Series {series_uid or os.path.basename(image_dir)}: no DICOM files cached in {image_dir}; re-open the "
            f"image (GET /infer or /datastore/image) and ask again."
        )
    return files


def answer_seg(image_dir: str, label_path: str, label_info: list | dict | None, use_itk: bool = True) -> str:
    """POST /infer?output=dicom_seg: the answered label as a DICOM SEG file on the cached series (pydicom-seg).

    Stands in for MONAI Label's `nifti_to_dicom_seg` (dcmqi's itkimage2segimage, downloaded from GitHub: offline it
    fails), with its signature; the caller answers the file and removes it afterwards.

    Args:
        image_dir: the series' cached DICOM folder.
        label_path: the answered label file.
        label_info: OHIF's `label_info` ([{"name", "idx"?}, ...]) or {"label_names": {name: value}}.
        use_itk: ignored (MONAI Label's argument).

    Returns:
        The SEG file path.
    """
    files = cached_series_files(image_dir, os.path.basename(image_dir))  # the folder is named by the series UID
    info = label_info if isinstance(label_info, dict) else {"label_info": label_info or []}
    fd, out = tempfile.mkstemp(suffix=".dcm")
    os.close(fd)
    try:
        seg_on_series(files, label_path, info, out, f"the answer on series {os.path.basename(image_dir)} (ask "
                      f"output=image for an empty mask, or prompt inside the object)")
    except BaseException:
        os.unlink(out)
        raise
    return out


class SAM2DICOMWebDatastore(DICOMWebDatastore):
    """DICOMWebDatastore whose `save_label` (tag `final`) stores a pydicom-seg DICOM SEG back by STOW-RS (no dcmqi)."""

    def get_image_uri(self, image_id: str) -> str:
        """Series UID -> cached NIfTI path; "" (not an exception) for a series the server does not hold."""
        check_image_id(image_id)
        if image_id not in self.list_images():
            return ""
        return super().get_image_uri(image_id)

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """The label file this server cached when it saved the label (the NIfTI behind the SEG it stored); else
        MONAI Label's SEG download for a SEG series id (labels written to the PACS by others).

        MONAI Label 0.8.5 treats every `final` label id as a SEG series to download, but the ids of labels saved here
        are image (series) ids: it would fetch the CT series and fail to decode it as a SEG."""
        cached = LocalDatastore.get_label_uri(self, label_id, label_tag)
        if label_tag == DefaultLabelTag.FINAL and cached and os.path.isfile(cached):
            return cached
        return super().get_label_uri(label_id, label_tag, image_id)

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Series with a final label: those with a SEG on the DICOMweb server, plus those labelled through this
        server since. MONAI Label caches the server's SEG listing for MONAI_LABEL_DICOMWEB_CACHE_EXPIRY (2 h by
        default), so a label saved here after the first listing would stay unseen (by quick updates, active learning
        and training) until then."""
        listed = super().get_labeled_images(label_tag, labels)
        return list(dict.fromkeys([*listed, *LocalDatastore.get_labeled_images(self, label_tag, labels)]))

    def _series_files(self, image_id: str) -> list[str]:
        """The cached DICOM files of a series, sorted by position along the slice normal (GDCM's order)."""
        return cached_series_files(os.path.realpath(os.path.join(self._datastore.image_path(), image_id)), image_id)

    def upload_seg(self, image_id: str, label_filename: str, label_info: dict[str, Any]) -> tuple[str, str]:
        """Label file -> DICOM SEG referencing the series -> STOW-RS; returns (SEG SeriesInstanceUID,
        SOPInstanceUID)."""
        out = tempfile.NamedTemporaryFile(suffix=".dcm", delete=False).name
        try:
            labels = seg_on_series(self._series_files(image_id), label_filename, label_info, out,
                                   f"series {image_id}")
            seg = pydicom.dcmread(out)
            self._client.store_instances([seg])
        finally:
            os.unlink(out)
        logger.info("Stored DICOM SEG %s (segments %s) for series %s", seg.SeriesInstanceUID, labels, image_id)
        return str(seg.SeriesInstanceUID), str(seg.SOPInstanceUID)

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], label_id: str = ""
    ) -> str:
        """Validate -> (tag final) SEG to the DICOMweb server -> local cache copy (the replaced one archived as
        versions/<id>.v<N>); returns the label id."""
        image_uri = self.get_image_uri(image_id)
        if not image_uri:
            raise not_found(f"Series {image_id!r} is not on the DICOMweb server (search filter {self._search_filter}).")
        if label_tag and ("/" in label_tag or "\\" in label_tag or label_tag.startswith(".")):
            raise bad_request(f"Label tag {label_tag!r} must be a plain name.")
        converted = ""
        if label_filename.endswith(".bin"):
            # OHIF v3's MONAI Label panel uploads the raw labelmap buffer ("label.bin") in the image's voxel order
            from monailabel.datastore.utils.convert import binary_to_image

            label_filename = converted = binary_to_image(image_uri, label_filename)
        try:
            return self._save(image_id, image_uri, label_filename, label_tag, label_info)
        finally:
            if converted and os.path.exists(converted):
                os.unlink(converted)

    def _save(
        self, image_id: str, image_uri: str, label_filename: str, label_tag: str, label_info: dict[str, Any]
    ) -> str:
        read_label(label_filename, load_image(image_uri))  # 422 naming the file when it cannot be used
        # The cached copy of the label being replaced is archived (highest version + 1), as on the local datastore;
        # for `final` its DICOM SEG stays on the DICOMweb server and is named in previous_SeriesInstanceUID.
        old = LocalDatastore.get_label_uri(self, image_id, label_tag)
        label_info = record_version(old, image_id, label_info, current_label_info(self, image_id, label_tag))
        if label_tag == DefaultLabelTag.FINAL:
            seg_series, seg_sop = self.upload_seg(image_id, label_filename, label_info)
            info = self.get_image_info(image_id)
            label_info.update({"SeriesInstanceUID": seg_series, "SOPInstanceUID": seg_sop,
                               "StudyInstanceUID": info.get("StudyInstanceUID"), "PatientID": info.get("PatientID")})
        return LocalDatastore.save_label(self, image_id, label_filename, label_tag, label_info)


def dicomweb_datastore(url: str) -> SAM2DICOMWebDatastore:
    """DICOMweb URL -> datastore configured from MONAI Label's settings (auth, prefixes, cache, filter), no dcmqi."""
    from dicomweb_client.session_utils import create_session_from_user_pass
    from monailabel.config import settings

    url = url.rstrip("/").strip()
    if "googleapis.com" in url:
        from dicomweb_client.ext.gcp.session_utils import create_session_from_gcp_credentials

        session = create_session_from_gcp_credentials()
    elif settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
        session = create_session_from_user_pass(
            settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD
        )
    else:
        session = None
    client = DICOMwebClientX(url=url, session=session, qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
                             wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
                             stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX)
    cache = (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip()
    logger.info("DICOMweb datastore %s (SEG write-back: pydicom-seg, no dcmqi)", url)
    return SAM2DICOMWebDatastore(client, settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER, cache or None,
                                 settings.MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME,
                                 settings.MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI)

