"""Pieces monailabel_app/main.py wires: per-bundle tasks and the request guard for image ids."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

from monailabel.interfaces.datastore import Datastore
from monailabel.utils.others.generic import remove_file

from sam2tune.monailabel.datastore import check_image_id
from sam2tune.monailabel.dicomweb import SAM2DICOMWebDatastore, answer_seg
from sam2tune.monailabel.errors import bad_request, not_found
from sam2tune.monailabel.images import is_photo
from sam2tune.monailabel.infer import SAM2AutoInferTask, SAM2InferTask
from sam2tune.monailabel.model import BundleModel
from sam2tune.monailabel.quick_update import QuickUpdater
from sam2tune.monailabel.settings import AppSettings
from sam2tune.monailabel.train import SAM2BundleTrainTask, check_train_request
from sam2tune.monailabel.validation import INFER_SPECS, InputError, check_mapping


def bundle_labels(meta: dict, name: str) -> list[str]:
    """Label names in index order from a bundle's metadata: `labels`, else the output channel_def, else the bundle name.

    Args:
        meta: the bundle's metadata.json (``BundleModel.metadata``).
        name: the bundle name (the fallback label is its first two words).

    Returns:
        Label names without "background".
    """
    labels = meta.get("labels")
    if isinstance(labels, dict):
        return [k for k, v in sorted(labels.items(), key=lambda kv: kv[1]) if k != "background"]
    if isinstance(labels, list) and labels:
        return [str(x) for x in labels if x != "background"]
    # MONAI's standard place: network_data_format.outputs.pred.channel_def {"0": "background", "1": "spleen", ...}
    channels = meta.get("network_data_format", {}).get("outputs", {}).get("pred", {}).get("channel_def", {})
    named = sorted((int(k), str(v).replace(" ", "_")) for k, v in channels.items() if str(k).isdigit() and int(k) > 0)
    if len(named) > 1 and [k for k, _ in named] == list(range(1, len(named) + 1)):
        return [v for _, v in named]
    return ["_".join(name.split("_")[:2])]


def bundle_tasks(name: str, settings: AppSettings) -> tuple[dict, SAM2BundleTrainTask, BundleModel]:
    """Bundle -> ({infer name: task}, train task, MC-dropout model).

    The infer tasks are the interactive one, plus `<name>_auto` when the network has a learned prompt.
    """
    model = BundleModel(name, settings)
    dim, labels = model.dimension, bundle_labels(model.metadata, name)
    infers = {name: SAM2InferTask(model, labels, dim, settings.threshold)}
    if model.has_learned_prompt:
        infers[f"{name}_auto"] = SAM2AutoInferTask(model, labels, dim, settings.threshold)
    return infers, SAM2BundleTrainTask(model, labels, dim), BundleModel(name, settings, dropout=settings.dropout)


def labelled_for(datastore: Datastore, label_id: str, served: Sequence[str], tag: str = "final") -> str | None:
    """The served bundle a saved label was made with: its info's ``model`` (as the client sent it with
    ``PUT /datastore/label``; an ``<bundle>_auto`` infer name counts for its bundle), or None when it names none of
    `served` (any bundle of the image's kind may learn from it)."""
    model = (datastore.get_label_info(label_id, tag) or {}).get("model") if label_id else None
    if not isinstance(model, str):
        return None
    model = model.removesuffix("_auto") if model not in served else model
    return model if model in served else None


def final_labels(datastore: Datastore, model: str | None = None, served: Sequence[str] = ()) -> list[tuple[str, ...]]:
    """(image id, image file, final label file) of every image with a final label, oldest label first.

    Args:
        datastore: the app's datastore (local or DICOMweb: both keep labels as local files).
        model: keep only the labels `model` may learn from: those made with it or with no served bundle (see
            ``labelled_for``); None keeps all.
        served: the served bundle names.

    Returns:
        The labelled images, sorted by the modification time of their label file.
    """
    out = []
    for image_id in datastore.get_labeled_images(label_tag="final"):
        label_id = datastore.get_label_by_image_id(image_id, "final")
        if model is not None and labelled_for(datastore, label_id, served) not in (None, model):
            continue  # another bundle's label (a lung nodule is not an abdominal organ)
        label = datastore.get_label_uri(label_id, "final") if label_id else ""
        image = datastore.get_image_uri(image_id)
        if label and image and os.path.isfile(label):
            out.append((os.path.getmtime(label), image_id, image, label))
    return [o[1:] for o in sorted(out)]


def quick_updaters(models: dict[str, BundleModel], datastore: Callable[[], Datastore],
                   settings: AppSettings) -> dict[str, QuickUpdater]:
    """One QuickUpdater per served bundle model when ``--conf auto_update true``, else none.

    Args:
        models: {bundle name: its served BundleModel}.
        datastore: returns the app's datastore (read when an update starts).
        settings: the app settings (update_steps, update_replay, update_learning_rate).

    Returns:
        {bundle name: updater}; empty when auto_update is off.
    """
    if not settings.auto_update:
        return {}
    served = tuple(models)
    return {name: QuickUpdater(model, lambda name=name: final_labels(datastore(), name, served), settings.update_steps,
                               settings.update_replay, settings.update_learning_rate)
            for name, model in models.items()}


def on_label_saved(updaters: dict[str, QuickUpdater], datastore: Datastore, image_id: str, label_id: str) -> dict:
    """After PUT /datastore/label: queue quick updates when the saved label is the image's final one.

    A photo updates the 2D bundles, a volume the 3D ones; a label saved with ``"model": <bundle>`` updates that
    bundle only.

    Args:
        updaters: ``quick_updaters`` of the app.
        datastore: the app's datastore.
        image_id: the image the label was saved for.
        label_id: the saved label.

    Returns:
        What the PUT answer gets: {"quick_update": {bundle: request number}} or {} (auto_update off, not final).
    """
    if not updaters or datastore.get_label_by_image_id(image_id, "final") != label_id:
        return {}
    photo = is_photo(datastore.get_image_uri(image_id))
    named = labelled_for(datastore, label_id, tuple(updaters))
    queued = {name: u.submit(image_id) for name, u in updaters.items()
              if (u.model.dimension == 2) == photo and named in (None, name)}
    return {"quick_update": queued} if queued else {}


VIEWERS = {
    3: {"slicer": True, "ohif": True, "inputs": "volumes: NIfTI / NRRD / DICOM series in a local datastore, or DICOM "
                                              "series from a DICOMweb server (OHIF's path)"},
    2: {"slicer": True, "ohif": False, "inputs": "photos (JPEG / PNG) in a local datastore",
        "why_not_ohif": "OHIF shows DICOM from a DICOMweb server, and a 2D bundle reads photos: a fundus or steel "
                        "photo stored as a DICOM secondary capture is a series the 2D infer does not read (it answers "
                        "400 'reads photos'). Use 3D Slicer, or POST /infer with the photo."},
}


def served_info(models: dict[str, BundleModel], updaters: dict[str, QuickUpdater]) -> dict:
    """What GET /info/ adds under "sam2tune": per bundle, the served weights, the quick-update state and the viewers
    that can use it (``VIEWERS``: the 2D bundles are not usable from OHIF, and why)."""
    out = {}
    for name, model in models.items():
        entry = {"weights": dict(model.served), "weights_version": model.weights_version(),
                 "embeddings": model.embedding_stats(), "viewers": VIEWERS[model.dimension]}
        if name in updaters:
            entry["quick_update"] = updaters[name].status()
        out[name] = entry
    return out


_UPLOADS: dict[str, float] = {}  # temp file names POST /infer handed out for uploads -> when (time.monotonic())
_UPLOADS_LOCK = threading.Lock()
_UPLOAD_TTL_S = 900.0  # a name not claimed by its request within this time is forgotten (e.g. a `label` upload)


def register_upload(path: str) -> None:
    """Remember a temp file name the server itself chose for an upload (one claim allowed, see guard_infer_request)."""
    now = time.monotonic()
    with _UPLOADS_LOCK:
        for old in [p for p, t in _UPLOADS.items() if now - t > _UPLOAD_TTL_S]:
            del _UPLOADS[old]
        _UPLOADS[str(path)] = now


def claim_upload(path: str) -> bool:
    """True once for a name registered by register_upload (then forgotten), False for any other path."""
    with _UPLOADS_LOCK:
        return _UPLOADS.pop(str(path), None) is not None


class _UploadTempfile:
    """Stands in for the `tempfile` module inside monailabel.endpoints.infer and records the upload names it makes."""

    def __getattr__(self, name: str):
        return getattr(tempfile, name)

    def NamedTemporaryFile(self, *args, **kwargs):  # noqa: N802 - tempfile's own name
        """tempfile.NamedTemporaryFile whose name is registered as an upload of the current request."""
        handle = tempfile.NamedTemporaryFile(*args, **kwargs)
        register_upload(handle.name)
        return handle


def track_infer_uploads() -> bool:
    """Make MONAI Label's POST /infer register the temp files it writes for `file` uploads; False if not importable.

    MONAI Label passes an upload to the app only as a temp-file path in request["image"], the same field a client
    fills with an image id, so without this the app cannot tell its own upload from a client naming some other
    /tmp/tmp* file (another request's upload, a label). The endpoint writes the file and calls the app in one
    synchronous step, so the name it registers is claimed by that same request.
    """
    try:
        from monailabel.endpoints import infer as endpoint
    except ImportError:  # no FastAPI server in this process (e.g. a training subprocess)
        return False
    if not isinstance(endpoint.tempfile, _UploadTempfile):
        endpoint.tempfile = _UploadTempfile()
    return True


def check_infer_options(request: dict) -> dict:
    """The typed infer options of a request (INFER_SPECS: threshold, propagate, label, result_extension, device,
    clicks...) checked in place: typed values replace the raw ones; 400 naming the key and its allowed values.

    Other keys (what MONAI Label and its clients add: client_id, label_info, ...) pass, but no string value that a
    bundle config would evaluate ('$...', '@...', '%...', '#') is accepted under any key.

    Args:
        request: the infer request dict (modified in place).

    Returns:
        The same dict.
    """
    checked = {k: v for k, v in request.items() if k not in ("image", "model", "session", "description")}
    try:
        request.update(
            check_mapping(checked, INFER_SPECS, f"infer request for {request.get('model')}:", unknown="keep")
        )
    except InputError as err:
        raise bad_request(str(err)) from None
    return request


def parse_infer_params(params: str | None, model: str = "") -> dict:
    """POST /infer's `params` form field -> dict; 400 naming `params` when it is not a JSON object.

    Args:
        params: the raw field (JSON text).
        model: the model, for the message.

    Returns:
        The parsed options ({} for an empty field).
    """
    if params is None or (isinstance(params, str) and not params.strip()):
        return {}
    try:
        value = json.loads(params)
    except (TypeError, ValueError) as err:
        raise bad_request(
            f"infer request for {model}: the form field `params` is not JSON ({err}); send a JSON object, "
            'e.g. params={"foreground": [[10, 20]]}.'
        ) from None
    if not isinstance(value, dict):
        raise bad_request(f"infer request for {model}: the form field `params` must be a JSON object, got "
                          f"{type(value).__name__}.")
    return value


def guard_endpoints(trainers: Callable[[], dict]) -> bool:
    """Check train and infer requests in MONAI Label's own endpoint functions, before anything runs.

    MONAI Label hands POST /train/<model> to a background process (the app's `train` runs there, after the HTTP
    answer), so a bad body must be refused in the server: `run_model` / `run` of monailabel.endpoints.train are
    wrapped to call check_train_request first (4xx, and the job never starts). POST /infer's `run_inference`
    is wrapped so that a non-JSON `params` field is a 400 naming it (MONAI Label's json.loads would answer 500).

    Args:
        trainers: returns {trainer name: task} of the app (called per request).

    Returns:
        False when the endpoints are not importable (no FastAPI server in this process, e.g. a training process).
    """
    try:
        from monailabel.endpoints import infer as infer_endpoint
        from monailabel.endpoints import train as train_endpoint
    except ImportError:
        return False
    if not getattr(train_endpoint.run_model, "_sam2tune_guard", False):
        run_model, run_all = train_endpoint.run_model, train_endpoint.run

        def guarded_run_model(model, params=None, run_sync=False, enqueue=False):
            check_train_request({**(params or {}), "model": model}, trainers())
            return run_model(model, params, run_sync, enqueue)

        def guarded_run(params=None, run_sync=False):
            names = trainers()
            for name in names:
                body = (params or {}).get(name) or {}
                if not isinstance(body, dict):
                    raise bad_request(
                        f"train request: the body for {name} must be a JSON object, got {type(body).__name__}."
                    )
                check_train_request({**body, "model": name}, names)
            unknown = sorted(set(params or {}) - set(names))
            if unknown:
                raise bad_request(f"train request: unknown trainer(s) {unknown}; trainers: {sorted(names)}.")
            return run_all(params, run_sync)

        guarded_run_model._sam2tune_guard = guarded_run._sam2tune_guard = True
        train_endpoint.run_model, train_endpoint.run = guarded_run_model, guarded_run
    if not getattr(infer_endpoint.run_inference, "_sam2tune_guard", False):
        run_inference = infer_endpoint.run_inference

        def guarded_run_inference(background_tasks, model, image="", session_id="", params="{}", file=None, label=None,
                                  output=None):
            options = parse_infer_params(params, model)
            seg = getattr(output, "value", output) == "dicom_seg"
            if seg:
                options = dicom_seg_request(model, image, file, options)
            answer = run_inference(background_tasks, model, image, session_id, json.dumps(options), file, label,
                                   output)
            if seg and getattr(answer, "path", None):
                background_tasks.add_task(remove_file, answer.path)  # the SEG answer_seg wrote for this request
            return answer

        guarded_run_inference._sam2tune_guard = True
        infer_endpoint.run_inference = guarded_run_inference
        infer_endpoint.nifti_to_dicom_seg = answer_seg  # output=dicom_seg: pydicom-seg, no dcmqi download
    return True


def dicom_seg_request(model: str, image: str, file, options: dict) -> dict:
    """POST /infer?output=dicom_seg: 400 where no SEG can be answered; `label_info` from the model's labels if absent.

    A DICOM SEG references the DICOM series it segments, so it needs the DICOMweb datastore and a series id (not an
    upload). MONAI Label asks for `label_info` (OHIF sends it); other clients get the served model's label names.

    Args:
        model: the infer model.
        image: the image id of the request.
        file: the uploaded file, if any.
        options: the parsed `params`.

    Returns:
        The options, with `label_info` ([{"name", "idx"}, ...]) set.
    """
    from monailabel.interfaces.utils.app import app_instance

    app = app_instance()
    if not isinstance(app.datastore(), SAM2DICOMWebDatastore):
        raise bad_request(
            f"infer request for {model}: output=dicom_seg answers a DICOM SEG that references a DICOM series, and this "
            f"server's datastore is a local folder; serve a DICOMweb server (--studies http://host/dicom-web) or ask "
            f"output=image."
        )
    if file is not None or not image:
        raise bad_request(
            f"infer request for {model}: output=dicom_seg needs the series in the datastore (image=<SeriesInstanceUID>"
            f"), not an upload."
        )
    if options.get("label_info") is None and model in app._infers:
        options = {**options, "label_info": [{"name": name, "idx": int(value)}
                                             for name, value in app._infers[model].labels.items()]}
    return options


def train_request(request: dict, trainers: dict) -> dict:
    """What the app's `train` passes on: the checked request, without the {trainer: body} entries of POST /train/.

    Args:
        request: MONAI Label's train request ({"model", **body}).
        trainers: the app's trainers.

    Returns:
        {"model": name, **checked body values}.
    """
    checked = check_train_request(request, trainers)
    return {"model": request["model"], **checked}


def guard_infer_request(request: dict, infers: dict, datastore: Datastore) -> None:
    """404 for unknown models / image ids, 400 for ids that are paths; only this request's own upload passes as a path.

    The typed options are checked too (check_infer_options).
    """
    model = request.get("model")
    if model not in infers:
        raise not_found(f"No infer model {model!r}; served models: {sorted(infers)} (see GET /info/).")
    check_infer_options(request)
    image = request.get("image")
    if not isinstance(image, str):
        return
    # An uploaded file (POST /infer with `file`) arrives as the temp file the endpoint just wrote and registered.
    if claim_upload(image):
        if not os.path.isfile(image):
            raise bad_request(f"The uploaded file for model {model!r} is gone; upload it again.")
        return
    if os.path.isabs(image) or "/" in image or "\\" in image:
        raise bad_request(
            f"Image {image!r} is not a datastore id: ids are plain names, never paths. The server reads no path a "
            f"client names; to segment your own file, upload it with the request (POST /infer/{model} with `file`)."
        )
    check_image_id(image)
    if not datastore.get_image_uri(image):
        raise not_found(f"Image {image!r} is not in the datastore; list ids with GET /datastore/?output=all.")
