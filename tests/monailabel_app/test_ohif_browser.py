"""OHIF in a real browser: MONAI Label 0.8.5's bundled OHIF v3 at /ohif/, in headless Debian Chromium (selenium),
over a real Orthanc on loopback. Study list -> viewer -> MONAI Label panel connects and lists the models -> a point on
the nodule with the panel's point tool -> Run -> the answer the browser received is the app's mask for that click.

Installs chromium + chromium-driver with apt when missing (as the Orthanc test installs Orthanc); skipped with the
reason only where that is impossible. Screenshots of each step go to the test's output folder (``shots`` fixture)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import time
import urllib.parse

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from monailabel.client import MONAILabelClient
from PIL import Image

from sam2tune.io.dicom_seg import read_dicom_seg
from sam2tune.io.dicom_series import write_dicom_series

from .conftest import apt_install, quick_update_served

pytestmark = pytest.mark.slow
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in requirements-dev.txt")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

MODEL = "lung_nodule_ct_sam2"
D, H, W = 8, 64, 64
CENTRE, RADIUS = (32, 30, 2), 12  # x, y, z of the nodule (voxels); radius in x/y voxels
SHOTS = os.environ.get("SAM2TUNE_OHIF_SHOTS")  # copy the screenshots here too (docs/ figures) ...
DOC_SHOTS = {"1_study_list", "2_viewer_connected", "4_viewer_with_mask", "5_saved_segmentation", "6_failed_infer",
             "7_abdomen_liver"}


def _chromium() -> tuple[str, str] | None:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _phantom(work, name: str, centre: tuple[int, int, int], modality: str = "CT",
             instance_order: str = "against_normal") -> tuple[list[str], np.ndarray]:
    """A CT-like series (a +40 HU nodule in -800 HU lung), its own patient and study; (files in InstanceNumber order,
    (I, J, K) truth, K along the slice normal). InstanceNumber 1 is the top slice, as a CT scanner writes an axial
    series from the head down, unless `instance_order` is "along_normal"."""
    zz, yy, xx = np.mgrid[:D, :H, :W]
    inside = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 + ((zz - centre[2]) * 4) ** 2 <= RADIUS ** 2
    files = write_dicom_series(np.where(inside, 40.0, -800.0) + 1024, str(work / name), spacing=(2.5, 0.8, 0.8),
                               modality=modality, patient_id=name, series_description=f"sam2tune {name}",
                               extra={"RescaleIntercept": -1024}, instance_order=instance_order)
    return files, inside.transpose(2, 1, 0).astype(np.uint8)


ABDOMEN = "abdomen_ct_sam2"
LIVER, SPLEEN = 6, 1  # the abdomen bundle's label values (BTCV)


def _abdomen(work, name: str, shift: tuple[int, int] = (0, 0)) -> tuple[list[str], np.ndarray]:
    """A CT-like abdomen series: the liver (+60 HU) under the viewport's middle (moved by `shift` x, y voxels), the
    spleen (+120 HU) off to the side, in fat (-100 HU); its own patient and study -> (files, (I, J, K) truth with the
    bundle's label values)."""
    zz, yy, xx = np.mgrid[:D, :H, :W]
    xx, yy = xx - shift[0], yy - shift[1]
    liver = ((xx - 32) / 14.0) ** 2 + ((yy - 30) / 11.0) ** 2 + ((zz - 3.5) / 3.0) ** 2 <= 1
    spleen = ((xx - 52) / 6.0) ** 2 + ((yy - 14) / 6.0) ** 2 + ((zz - 3.5) / 2.5) ** 2 <= 1
    truth = np.where(liver, LIVER, np.where(spleen, SPLEEN, 0)).astype(np.uint8)
    hu = np.select([liver, spleen], [60.0, 120.0], -100.0)
    files = write_dicom_series(hu + 1024, str(work / name), spacing=(2.5, 0.8, 0.8), modality="CT", patient_id=name,
                               series_description=f"sam2tune {name}", extra={"RescaleIntercept": -1024},
                               instance_order="against_normal")
    return files, truth.transpose(2, 1, 0)


@pytest.fixture(scope="module")
def browser_app(orthanc, server_control, tmp_path_factory):
    """The app serving the lung bundle from Orthanc (quick updates on), over four studies: `ohif-phantom` (the one
    clicked on), `ohif-labelled` (another nodule, whose label the fast loop learns from), `ohif-along` (the nodule of
    `ohif-phantom` in a series whose InstanceNumbers run along the slice normal, bottom slice first) and `ohif-mr`
    (an MR series the datastore does not list: its Modality filter is CT); and the abdomen bundle over `ohif-abdomen`
    (clicked on) and `ohif-abdomen-labelled` (its organs' label, which the abdomen model's quick update learns
    from)."""
    work = tmp_path_factory.mktemp("ohif")
    series = {"ohif-phantom": _phantom(work, "ohif-phantom", CENTRE),
              "ohif-labelled": _phantom(work, "ohif-labelled", (28, 36, 4)),
              "ohif-along": _phantom(work, "ohif-along", CENTRE, instance_order="along_normal"),
              "ohif-mr": _phantom(work, "ohif-mr", CENTRE, "MR"),
              "ohif-abdomen": _abdomen(work, "ohif-abdomen"),
              "ohif-abdomen-labelled": _abdomen(work, "ohif-abdomen-labelled", (-4, 3))}
    for files, _ in series.values():
        DICOMwebClient(orthanc).store_instances([pydicom.dcmread(f) for f in files])
    uids = {}
    for name, (files, truth) in series.items():
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        uids[name] = {"series": str(ds.SeriesInstanceUID), "study": str(ds.StudyInstanceUID), "files": files,
                      "truth": truth}
    start_server, stop_server = server_control
    conf = {"models": f"{MODEL},{ABDOMEN}", "image_size": 64, "sam2_variant": "tiny", "device": "cpu",
            "auto_update": "true", "update_steps": 150, "update_learning_rate": 1e-3}
    proc, url = start_server(orthanc, str(work / "model"), str(work / "server.log"), conf,
                             env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(work / "cache")})
    yield url, uids, work
    stop_server(proc)


@pytest.fixture(scope="module")
def driver():
    apt_install(["chromium", "chromium-driver"], lambda: _chromium() is not None)
    browser, chromedriver = _chromium()
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000",
                "--enable-unsafe-swiftshader"):  # software WebGL: OHIF's cornerstone3D needs WebGL
        opts.add_argument(arg)
    opts.binary_location = browser
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)  # the system driver: no Selenium Manager
    d.execute_cdp_cmd("Network.enable", {})
    yield d
    d.quit()


def _wait(fn, timeout=60.0, what=""):
    end, last = time.monotonic() + timeout, None
    while time.monotonic() < end:
        try:
            out = fn()
            if out:
                return out
        except Exception as err:  # noqa: BLE001 - the page re-renders under us; retry until the deadline
            last = err
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


def _shot(d, work, name):
    path = work / f"{name}.png"
    d.save_screenshot(str(path))
    if SHOTS and name in DOC_SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        shutil.copy(path, os.path.join(SHOTS, f"ohif_{name}.png"))
    return path


def _infer_exchanges(d) -> list[tuple[dict, dict, bytes]]:
    """(request, response, body) of each /infer/ call the page made, from Chrome's network log."""
    requests, responses = {}, {}
    for entry in d.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent" and "/infer/" in msg["params"]["request"]["url"]:
            requests[msg["params"]["requestId"]] = msg["params"]["request"]
        if msg["method"] == "Network.responseReceived" and "/infer/" in msg["params"]["response"]["url"]:
            responses[msg["params"]["requestId"]] = msg["params"]["response"]
    out = []
    for rid, resp in responses.items():
        body = d.execute_cdp_cmd("Network.getResponseBody", {"requestId": rid})
        data = base64.b64decode(body["body"]) if body["base64Encoded"] else body["body"].encode()
        out.append((requests.get(rid, {}), resp, data))
    return out


def _body(d) -> str:
    return d.find_element(By.TAG_NAME, "body").text


def _open_viewer(d, url: str, study_uid: str, series_description: str, model: str = MODEL,
                 label: str = "lung_nodule") -> None:
    """The MONAI Label mode on a study, the panel connected (GET /info/), Point Prompts on `model` and `label`. The
    server URL is the panel's cookie, as after a user typed it once."""
    if not d.current_url.startswith(url):
        d.get(url + "/ohif/")
    d.add_cookie({"name": "MONAILABEL_SERVER_URL", "value": urllib.parse.quote(url + "/", safe=""), "path": "/"})
    d.get(url + f"/ohif/monai-label?StudyInstanceUIDs={study_uid}")
    _wait(lambda: "I:" in _body(d) and series_description in _body(d), what="the series in the viewport")
    for hide in d.find_elements(By.XPATH, "//button[normalize-space()='Confirm and Hide']"):
        hide.click()  # OHIF's "investigational use" banner, once per browser session
    _wait(lambda: d.find_element(By.ID, "monailabelServerURL").get_attribute("value") == url + "/", what="panel URL")
    d.find_element(By.CSS_SELECTOR, "table.settingsTable button.actionButton").click()  # connect
    _wait(lambda: "Point Prompts" in _body(d), what="the panel connected (GET /info/)")
    assert f"{MODEL}_auto" in _body(d)  # the Auto-Segmentation tab lists the automatic variant
    d.find_element(By.XPATH, "//label[contains(., 'Point Prompts')]").click()
    option = _wait(lambda: [o for o in d.find_elements(By.CSS_SELECTOR, "select option") if o.text == model],
                   what=f"{model} in the Point Prompts selector")
    option[0].click()
    row = _wait(lambda: [r for r in d.find_elements(By.XPATH, f"//tr[contains(@class,'clickable-row')][td[contains(., "
                                                    f"'{label}')]]") if r.is_displayed()], what=f"{label} in the panel")
    row[0].click()


def _canvas(d):
    return d.find_elements(By.CSS_SELECTOR, "canvas.cornerstone-canvas")[0]


def _click_and_run(d) -> str:
    """A point at the middle of the axial viewport (the nodule) with the panel's point tool, then Run; the page text
    once the panel has its answer."""
    ActionChains(d).move_to_element(_canvas(d)).click().perform()
    _wait(lambda: d.execute_script("return window.cornerstoneTools.annotation.state.getAllAnnotations()"
                                   ".filter(a => a.metadata.toolName === 'ProbeMONAILabel').length") == 1,
          what="the point in cornerstone's annotation state")
    time.sleep(0.5)  # the panel reads the annotations when Run is clicked
    run = [b for b in d.find_elements(By.XPATH, "//button[normalize-space()='Run']") if b.is_displayed()]
    assert len(run) == 1
    run[0].click()
    done = ("Running Inference for Point Prompts - Successful", "Failed to Run Inference for Point Prompts")
    return _wait(lambda: (lambda t: t if any(m in t for m in done) else "")(_body(d)), 120, "the infer answer")


def _coloured_pixels(d, work, name: str) -> int:
    """Pixels of the axial viewport in a screenshot that are not grey (the CT is grey; a segmentation is coloured)."""
    path = _shot(d, work, name)
    rect = _canvas(d).rect
    x0, y0 = int(rect["x"]), int(rect["y"])
    rgb = np.asarray(Image.open(path).convert("RGB"), np.int16)[y0:y0 + int(rect["height"]), x0:x0 + int(rect["width"])]
    return int(((rgb.max(-1) - rgb.min(-1)) > 40).sum())


def _answer(d) -> tuple[dict, np.ndarray]:
    """The params the page sent and the (I, J, K) mask it received (NRRD) in its only /infer/ call so far."""
    exchanges = _infer_exchanges(d)
    assert len(exchanges) == 1
    request, response, body = exchanges[0]
    assert response["status"] == 200
    post = request["postData"]
    params = json.loads(post[post.index("{"):post.rindex("}") + 1])
    stream = io.BytesIO(body)
    header = nrrd.read_header(stream)
    shown = nrrd.read_data(header, stream)
    assert shown.shape == (W, H, D) and header["space"] == "left-posterior-superior"
    return params | {"_url": request["url"]}, np.asarray(shown)


def _quick_update(url: str, model: str, labelled: dict, click: list[int], names: dict, tmp_path) -> dict:
    """Save `labelled`'s truth as its final label (as Slicer saves it, on the grid of the server's own answer) and wait
    for the quick update of `model` to be served -> the update's status (``quick_update.last``)."""
    client = MONAILabelClient(url, tmpdir=str(tmp_path))
    affine = nib.load(client.infer(model, labelled["series"], {"foreground": [click], "reset": True})[0]).affine
    nib.save(nib.Nifti1Image(labelled["truth"], affine), tmp_path / "label.nii.gz")
    saved = client.save_label(labelled["series"], str(tmp_path / "label.nii.gz"), tag="final",
                              params={"label_names": names, "model": model})
    return quick_update_served(url, model, saved["quick_update"][model])["quick_update"]["last"]


def test_click_segment_in_ohif(browser_app, driver, tmp_path):
    url, uids, work = browser_app
    target = uids["ohif-phantom"]
    d = driver
    # 1. study list
    d.get(url + "/ohif/")
    _wait(lambda: "ohif-phantom" in _body(d) and "ohif-labelled" in _body(d), what="the studies in the study list")
    assert "CT" in _body(d)
    _shot(d, work, "1_study_list")

    # 2. viewer (MONAI Label mode) and the panel
    _open_viewer(d, url, target["study"], "sam2tune ohif-phantom")
    _shot(d, work, "2_viewer_connected")

    # 3. a point on the nodule, Run (random initial weights: the mask may be empty or anything)
    _infer_exchanges(d)  # drop what the page loaded so far
    text = _click_and_run(d)
    errors = [e["message"][:400] for e in d.get_log("browser")
              if e["level"] == "SEVERE" and "googleapis" not in e["message"]]
    assert "Running Inference for Point Prompts - Successful" in text, (text[:300], errors[-8:])
    time.sleep(1)
    _shot(d, work, "3_viewer_after_infer")

    # 4. what the browser sent and received
    params, shown = _answer(d)
    assert f"image={target['series']}" in params.pop("_url")
    (fx, fy, fz), = params["foreground"]
    assert (fx - CENTRE[0]) ** 2 + (fy - CENTRE[1]) ** 2 < RADIUS ** 2 and 0 <= fz < D  # the click is on the nodule
    assert params["result_extension"] == ".nrrd"

    # the same request outside the browser (a fresh session) gives the same mask: the browser got the app's answer
    client = MONAILabelClient(url, tmpdir=str(tmp_path))
    again, _ = client.infer(MODEL, target["series"], {**params, "reset": True})
    np.testing.assert_array_equal(np.asarray(nrrd.read(again)[0]), shown)
    nifti, _ = client.infer(MODEL, target["series"], {"foreground": params["foreground"], "background": [],
                                                      "reset": True})
    np.testing.assert_array_equal(np.asarray(nib.load(nifti).dataobj), shown)


def test_fast_loop_mask_in_ohif_then_save_it_to_the_pacs(browser_app, driver, orthanc, tmp_path):
    """A label saved on another series (as Slicer saves it) updates the served model in seconds; the click in OHIF
    then shows a mask on the viewport, and OHIF's own DICOM SEG export stores it in Orthanc, where it decodes to the
    mask the browser received."""
    url, uids, work = browser_app
    target, labelled = uids["ohif-phantom"], uids["ohif-labelled"]
    last = _quick_update(url, MODEL, labelled, [28, 36, 4], {"lung_nodule": 1}, tmp_path)
    assert "error" not in last and last.get("trained_on") == [labelled["series"]], last

    d = driver
    _open_viewer(d, url, target["study"], "sam2tune ohif-phantom")
    _infer_exchanges(d)
    before = _coloured_pixels(d, work, "4a_before_run")
    text = _click_and_run(d)
    assert "Running Inference for Point Prompts - Successful" in text, text[:300]
    time.sleep(1)
    after = _coloured_pixels(d, work, "4_viewer_with_mask")
    _, shown = _answer(d)
    truth = target["truth"]
    dice = 2 * float((shown > 0)[truth > 0].sum()) / max(1, int((shown > 0).sum() + truth.sum()))
    print(f"OHIF fast loop: mask of {int((shown > 0).sum())} voxels, Dice {dice:.3f} against the nodule; coloured "
          f"viewport pixels {before} -> {after}")
    assert shown.any() and after > before + 100, (dice, before, after)  # the mask is drawn on the viewport

    seg = _save_from_ohif(d, orthanc, target, tmp_path, work, shot=True)
    # The SEG OHIF stored is the mask it drew: decoded onto the CT's slices and put in slice-normal order, it equals
    # the answer the browser received (I, J, K -> K, J, I).
    np.testing.assert_array_equal(seg > 0, shown.transpose(2, 1, 0) > 0)


def test_ohif_mirrors_the_seg_of_a_series_stored_bottom_slice_first(browser_app, driver, orthanc, tmp_path):
    """OHIF 3 (as MONAI Label 0.8.5 bundles it) stores the SEG of a series whose InstanceNumbers run along the slice
    normal (InstanceNumber 1 = the bottom slice) mirrored in z: its frames run against the labelmap it drew. Pinned,
    so that a fixed OHIF shows up here; upstream: OHIF/Viewers issues 5038 and 5183. The nodule is off-centre in z,
    so the flip shows. Runs after the fast-loop test, whose quick update makes the served model draw a mask."""
    url, uids, work = browser_app
    target = uids["ohif-along"]
    d = driver
    _open_viewer(d, url, target["study"], "sam2tune ohif-along")
    _infer_exchanges(d)
    text = _click_and_run(d)
    assert "Running Inference for Point Prompts - Successful" in text, text[:300]
    _, shown = _answer(d)
    assert shown.any(), "the served model drew no mask: the fast-loop test's quick update did not run first"
    seg = _save_from_ohif(d, orthanc, target, tmp_path, work, shot=False)
    drawn = shown.transpose(2, 1, 0) > 0
    assert not np.array_equal(seg > 0, drawn)
    np.testing.assert_array_equal(seg > 0, drawn[::-1])


def test_an_organ_of_the_abdomen_bundle_in_ohif(browser_app, driver, tmp_path):
    """The 3D multi-organ bundle from OHIF: after a quick update on another series' organ label, the liver chosen in
    the panel and a click on it propagate a mask through the volume, which OHIF draws into the liver segment. The
    panel sends a `deepgrow` model the clicks of the chosen label only (no label name): the model segments the object
    clicked on, and the panel puts the answer in the segment chosen."""
    url, uids, work = browser_app
    target, labelled = uids["ohif-abdomen"], uids["ohif-abdomen-labelled"]
    last = _quick_update(url, ABDOMEN, labelled, [28, 33, 3], {"spleen": SPLEEN, "liver": LIVER}, tmp_path)
    assert "error" not in last and last.get("trained_on") == [labelled["series"]], last

    d = driver
    _open_viewer(d, url, target["study"], "sam2tune ohif-abdomen", model=ABDOMEN, label="liver")
    _infer_exchanges(d)
    text = _click_and_run(d)
    assert "Running Inference for Point Prompts - Successful" in text, text[:300]
    time.sleep(1)
    _shot(d, work, "7_abdomen_liver")
    params, shown = _answer(d)
    assert f"/infer/{ABDOMEN}" in params.pop("_url") and "label" not in params
    (fx, fy, fz), = params["foreground"]
    truth = target["truth"]
    assert truth[fx, fy, fz] == LIVER, (fx, fy, fz)  # the click is on the liver
    liver = truth == LIVER
    dice = 2 * float((shown > 0)[liver].sum()) / max(1, int((shown > 0).sum() + liver.sum()))
    slices = np.nonzero((shown > 0).any((0, 1)))[0]
    print(f"OHIF abdomen: liver click at {fx, fy, fz}, mask of {int((shown > 0).sum())} voxels on slices "
          f"{slices.tolist()}, Dice {dice:.3f} against the liver")
    assert len(slices) > 1  # propagated beyond the clicked slice
    # what OHIF drew: the answer's voxels, all in the segment named liver
    drawn = d.execute_script("""
        const s = window.services.segmentationService, seg = s.getSegmentations()[0];
        const names = {}; Object.values(seg.segments).forEach(x => { if (x) names[x.segmentIndex] = x.label; });
        const data = s.getLabelmapVolume(seg.segmentationId || seg.id).voxelManager.getCompleteScalarDataArray();
        const counts = {}; for (const v of data) { if (v) counts[v] = (counts[v] || 0) + 1; }
        return Object.entries(counts).map(([v, n]) => [names[v], n]);""")
    assert drawn == [["liver", int((shown > 0).sum())]], drawn


def _save_from_ohif(d, orthanc, target: dict, tmp_path, work, shot: bool) -> np.ndarray:
    """Store the viewport's only segmentation with OHIF's own DICOM SEG export, find it in Orthanc (QIDO-RS) ->
    its mask decoded onto the target CT series, (K, J, I) with K along the slice normal."""
    # OHIF's own export (dcmjs SEG, STOW-RS through the server's /proxy/dicom) - the command the segmentation
    # panel's "Export DICOM SEG" runs in OHIF's other modes; this mode has no button for it, so the test runs it.
    segmentations = d.execute_script("return window.services.segmentationService.getSegmentations()"
                                    ".map(s => s.segmentationId || s.id)")
    assert len(segmentations) == 1, (segmentations, _body(d)[-300:])
    d.execute_script("window._sam2tuneSave = Promise.resolve(window.commandsManager.runCommand('storeSegmentation', "
                     "{segmentationId: arguments[0]}, 'CORNERSTONE')).then(() => 'done', e => 'error: ' + e);"
                     "window._sam2tuneSave.then(r => { window._sam2tuneSaved = r; });", segmentations[0])
    field = _wait(lambda: [i for i in d.find_elements(By.CSS_SELECTOR, "div[role=dialog] input, .modal input, "
                                                      "input[type=text]") if i.is_displayed()], 30, "the save dialog")
    field[0].send_keys("sam2tune OHIF save")
    if shot:
        _shot(d, work, "5a_save_dialog")
    save = [b for b in d.find_elements(By.XPATH, "//button[normalize-space()='Save']") if b.is_displayed()]
    save[0].click()
    saved = _wait(lambda: d.execute_script("return window._sam2tuneSaved"), 60, "OHIF's store to finish")
    assert saved == "done", saved
    qido = DICOMwebClient(orthanc)

    def stored():
        found = qido.search_for_series(target["study"], search_filters={"Modality": "SEG"})
        return [pydicom.Dataset.from_json(s) for s in found
                if pydicom.Dataset.from_json(s).get("SeriesDescription") == "sam2tune OHIF save"]

    seg_series = _wait(stored, 60, "the SEG series in Orthanc")[0].SeriesInstanceUID
    # OHIF lists the stored SEG (read back from Orthanc) and offers to open it in the viewport. No: opening a SEG
    # display set in this mode fails inside OHIF 3 ("reading 'volumeId'"); the drawn mask stays, the SEG is listed.
    try:  # the screenshot only: what is asserted is in Orthanc
        no = _wait(lambda: [b for b in d.find_elements(By.XPATH, "//button[normalize-space()='No']")
                            if b.is_displayed()], 20, "OHIF's offer to open the stored SEG")
        no[0].click()
        _wait(lambda: "sam2tune OHIF save" in _body(d), 20, "the SEG in OHIF's study browser")
    except AssertionError as err:
        print(f"screenshot 5 without OHIF's listing: {err}")
    if shot:
        time.sleep(1)
        _shot(d, work, "5_saved_segmentation")
    seg = qido.retrieve_series(target["study"], seg_series)[0]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == target["series"]
    seg.save_as(tmp_path / "ohif_seg.dcm")
    back, names = read_dicom_seg(str(tmp_path / "ohif_seg.dcm"), target["files"])  # in the files' order
    # OHIF's segmentation holds a segment per label of every served model; the mask is in the nodule's
    present = sorted(names[int(v)] for v in np.unique(back) if v)
    assert present == ["lung_nodule"], (present, names)
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in target["files"]]
    normal = np.cross(*np.asarray(heads[0].ImageOrientationPatient, float).reshape(2, 3))
    return back[np.argsort([float(np.dot(h.ImagePositionPatient, normal)) for h in heads])]


def test_a_failed_infer_reaches_the_panel(browser_app, driver):
    """An MR series that the datastore does not list (its filter is Modality CT): the panel's Run ends in its error
    notification, and the answer the browser got says why (404 naming the series)."""
    url, uids, work = browser_app
    d = driver
    _open_viewer(d, url, uids["ohif-mr"]["study"], "sam2tune ohif-mr")
    _infer_exchanges(d)
    text = _click_and_run(d)
    assert "Failed to Run Inference for Point Prompts" in text, text[:300]
    _shot(d, work, "6_failed_infer")
    (request, response, body), = _infer_exchanges(d)
    assert response["status"] == 404 and uids["ohif-mr"]["series"] in request["url"]
    detail = json.loads(body)["detail"]
    assert "is not in the datastore" in detail, detail
