"""OHIF in a real browser: MONAI Label 0.8.5's bundled OHIF v3 at /ohif/, in headless Debian Chromium (selenium),
over a real Orthanc on loopback. Study list -> viewer -> MONAI Label panel connects and lists the models -> a point on
the nodule with the panel's point tool -> Run -> the answer the browser received is the app's mask for that click.

Installs chromium + chromium-driver with apt when missing (as the Orthanc test installs Orthanc); skipped with the
reason only where that is impossible. Screenshots of each step go to the test's output folder (``shots`` fixture)."""

from __future__ import annotations

import base64
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

from sam2tune.io.dicom_series import write_dicom_series

from .conftest import apt_install

pytestmark = pytest.mark.slow
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in requirements-dev.txt")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

MODEL = "lung_nodule_ct_sam2"
D, H, W = 8, 64, 64
CENTRE, RADIUS = (32, 30, 4), 12  # x, y, z of the nodule (voxels); radius in x/y voxels
SHOTS = os.environ.get("SAM2TUNE_OHIF_SHOTS")  # copy the screenshots here too (docs/ figures)


def _chromium() -> tuple[str, str] | None:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser_app(orthanc, server_control, tmp_path_factory):
    """(url, dicomweb url, series uid, study uid) of the app serving the lung bundle from Orthanc."""
    work = tmp_path_factory.mktemp("ohif")
    zz, yy, xx = np.mgrid[:D, :H, :W]
    inside = (xx - CENTRE[0]) ** 2 + (yy - CENTRE[1]) ** 2 + ((zz - CENTRE[2]) * 4) ** 2 <= RADIUS ** 2
    files = write_dicom_series(np.where(inside, 40.0, -800.0) + 1024, str(work / "ct"), spacing=(2.5, 0.8, 0.8),
                               modality="CT", patient_id="ohif-phantom", series_description="sam2tune OHIF phantom",
                               extra={"RescaleIntercept": -1024})
    DICOMwebClient(orthanc).store_instances([pydicom.dcmread(f) for f in files])
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    start_server, stop_server = server_control
    conf = {"models": MODEL, "image_size": 64, "sam2_variant": "tiny", "device": "cpu"}
    proc, url = start_server(orthanc, str(work / "model"), str(work / "server.log"), conf,
                             env={"MONAI_LABEL_DICOMWEB_CACHE_PATH": str(work / "cache")})
    yield url, str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID), work
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
    if SHOTS:
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


def test_click_segment_in_ohif(browser_app, driver, tmp_path):
    url, series_uid, study_uid, work = browser_app
    d = driver
    # 1. study list
    d.get(url + "/ohif/")
    _wait(lambda: "ohif-phantom" in _body(d), what="the study in OHIF's study list")
    assert "CT" in _body(d)
    _shot(d, work, "1_study_list")

    # 2. viewer (MONAI Label mode) and the panel: the server URL is the panel's cookie, as after a user typed it once
    d.add_cookie({"name": "MONAILABEL_SERVER_URL", "value": urllib.parse.quote(url + "/", safe=""), "path": "/"})
    d.get(url + f"/ohif/monai-label?StudyInstanceUIDs={study_uid}")
    _wait(lambda: "I:" in _body(d) and "sam2tune OHIF phantom" in _body(d), what="the series in the viewport")
    _wait(lambda: d.find_element(By.ID, "monailabelServerURL").get_attribute("value") == url + "/", what="panel URL")
    d.find_element(By.CSS_SELECTOR, "table.settingsTable button.actionButton").click()  # connect
    _wait(lambda: "Point Prompts" in _body(d), what="the panel connected (GET /info/)")
    assert f"{MODEL}_auto" in _body(d)  # the Auto-Segmentation tab lists the automatic variant
    d.find_element(By.XPATH, "//label[contains(., 'Point Prompts')]").click()
    _wait(lambda: any(o.text == MODEL for o in d.find_elements(By.CSS_SELECTOR, "select option")),
          what="the interactive model in the Point Prompts selector")
    d.find_element(By.XPATH, "//tr[contains(@class,'clickable-row')][td[contains(., 'lung_nodule')]]").click()
    _shot(d, work, "2_viewer_connected")

    # 3. a point at the middle of the axial viewport (the nodule), Run
    canvas = d.find_elements(By.CSS_SELECTOR, "canvas.cornerstone-canvas")[0]
    ActionChains(d).move_to_element(canvas).click().perform()
    _wait(lambda: d.execute_script("return window.cornerstoneTools.annotation.state.getAllAnnotations()"
                                   ".filter(a => a.metadata.toolName === 'ProbeMONAILabel').length") == 1,
          what="the point in cornerstone's annotation state")
    time.sleep(0.5)  # the panel reads the annotations when Run is clicked
    run = [b for b in d.find_elements(By.XPATH, "//button[normalize-space()='Run']") if b.is_displayed()]
    assert len(run) == 1
    run[0].click()
    _wait(lambda: "Successful" in _body(d) or "Failed" in _body(d), 120, "the infer answer")
    errors = [e["message"][:400] for e in d.get_log("browser")
              if e["level"] == "SEVERE" and "googleapis" not in e["message"]]
    assert "Running Inference for Point Prompts - Successful" in _body(d), (_body(d)[:300], errors[-8:])
    time.sleep(1)
    _shot(d, work, "3_viewer_after_infer")

    # 4. what the browser sent and received
    exchanges = _infer_exchanges(d)
    assert len(exchanges) == 1
    request, response, body = exchanges[0]
    assert response["status"] == 200 and f"image={series_uid}" in request["url"]
    post = request["postData"]
    params = json.loads(post[post.index("{"):post.rindex("}") + 1])
    (fx, fy, fz), = params["foreground"]
    assert (fx - CENTRE[0]) ** 2 + (fy - CENTRE[1]) ** 2 < RADIUS ** 2 and 0 <= fz < D  # the click is on the nodule
    assert params["result_extension"] == ".nrrd"
    (tmp_path / "answer.nrrd").write_bytes(body)
    shown, header = nrrd.read(str(tmp_path / "answer.nrrd"))
    assert shown.shape == (W, H, D) and header["space"] == "left-posterior-superior"

    # the same request outside the browser (a fresh session) gives the same mask: the browser got the app's answer
    client = MONAILabelClient(url, tmpdir=str(tmp_path))
    again, _ = client.infer(MODEL, series_uid, {**params, "reset": True})
    np.testing.assert_array_equal(np.asarray(nrrd.read(again)[0]), shown)
    nifti, _ = client.infer(MODEL, series_uid, {"foreground": params["foreground"], "background": [], "reset": True})
    np.testing.assert_array_equal(np.asarray(nib.load(nifti).dataobj), shown)
