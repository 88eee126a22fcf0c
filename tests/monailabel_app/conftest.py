"""A real MONAI Label server on 127.0.0.1 (free port) over REFUGE phantom studies, killed by the fixture finaliser."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from sam2tune.monailabel import server as ml_server  # not `server`: the fixture below has that name
from sam2tune.monailabel.server import free_port

REPO = Path(__file__).resolve().parents[2]


def start_server(studies: str, model_dir: str, log_path: str, conf: dict, timeout: float = 120.0,
                 env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """``sam2tune.monailabel.server.start_server`` of this checkout's app; the test fails with the server log when it
    does not come up."""
    try:
        return ml_server.start_server(studies, model_dir, log_path, conf, timeout, env, REPO / "monailabel_app")
    except ml_server.ServerError as err:
        pytest.fail(str(err))


stop_server = ml_server.stop_server


def wait_for_training(client, log_path: str, timeout: float) -> dict:
    """Poll GET /train/ until the job ends -> its status; fails with the server log unless it ended DONE."""
    deadline, status = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        status = client.train_status()
        if status.get("status") in ("DONE", "ERROR"):
            break
        time.sleep(2)
    assert status and status.get("status") == "DONE", (
        f"training did not finish: {status}\n{Path(log_path).read_text()[-3000:]}"
    )
    return status


def served_status(url: str, model: str) -> dict:
    """GET /info/ -> the app's "sam2tune" entry of `model` (weights, quick_update, embeddings, viewers)."""
    return json.loads(urllib.request.urlopen(f"{url}/info/", timeout=60).read())["sam2tune"][model]


def quick_update_served(url: str, model: str, requested: int, timeout: float = 300.0) -> dict:
    """Poll GET /info/ until quick update number `requested` of `model` is served -> ``served_status`` then."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = served_status(url, model)
        if status["quick_update"]["served"] >= requested and not status["quick_update"]["running"]:
            return status
        time.sleep(0.5)
    raise AssertionError(f"no quick update served after {timeout} s: {served_status(url, model)}")


@pytest.fixture(scope="session")
def training_waiter():
    """wait_for_training(client, log_path, timeout) for tests that start a train job."""
    return wait_for_training


@pytest.fixture(scope="session", autouse=True)
def _private_tempdir(tmp_path_factory):
    """Result files of infer tasks (MONAI Label's `tmp*.nii.gz|png`, which a server deletes after answering but a
    direct task call leaves) go to pytest's temp tree, here and in the servers started here (TMPDIR)."""
    path = str(tmp_path_factory.mktemp("tempdir"))
    before = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = path, path
    yield path
    if before[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before[0]
    tempfile.tempdir = before[1]


@pytest.fixture(scope="session")
def server_control():
    """(start_server, stop_server) for tests that start a server with their own studies (e.g. DICOMweb)."""
    return start_server, stop_server


@pytest.fixture(scope="session")
def refuge_studies(tmp_path_factory) -> str:
    """Flat folder of REFUGE phantom photos (<id>.jpg, 96 px), as a MONAI Label local datastore reads them."""
    from sam2tune.data.phantoms.refuge import write_refuge_phantoms

    root = tmp_path_factory.mktemp("ml")
    write_refuge_phantoms(str(root / "phantoms"), cases=4, seed=0, size=96)
    studies = root / "studies"
    studies.mkdir()
    for p in glob.glob(str(root / "phantoms" / "REFUGE" / "*" / "*" / "*_cropped.jpg")):
        if "_seg_" not in p:
            shutil.copy(p, studies / os.path.basename(p).replace("_cropped", ""))
    return str(studies)


@pytest.fixture(scope="module")
def server(refuge_studies, tmp_path_factory):
    """(url, studies, model_dir, log path) of a running tiny-CPU server; stopped when the module ends."""
    work = tmp_path_factory.mktemp("server")
    model_dir, log_path = str(work / "model"), str(work / "server.log")
    conf = {"models": "all", "image_size": 64, "sam2_variant": "tiny", "device": "cpu", "mc_samples": 3}
    proc, url = start_server(refuge_studies, model_dir, log_path, conf)
    yield url, refuge_studies, model_dir, log_path
    stop_server(proc)


PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
D, H, W = 8, 64, 64


def _orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)), None
    )


def apt_install(packages: list[str], present) -> None:
    """``apt-get install <packages>`` unless ``present()`` (bounded); pytest.skip with the reason when impossible."""
    if present():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"{' '.join(packages)} not installed and apt-get as root is unavailable "
                    f"(install: apt-get install {' '.join(packages)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd, limit in ((["apt-get", "update", "-qq"], 90), (["apt-get", "install", "-y", "-qq", *packages], 240)):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, env=env)
        except subprocess.TimeoutExpired:
            pytest.skip(f"{' '.join(cmd)} took over {limit}s (no package mirror reachable?)")
        if res.returncode != 0:
            pytest.skip(f"{' '.join(cmd)} failed: {res.stderr.strip()[-300:]}")
    if not present():
        pytest.skip(f"{' '.join(packages)} installed but not usable")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    """URL of a DICOMweb root served by a fresh Orthanc on 127.0.0.1 (loopback only, storage in tmp)."""
    apt_install(["orthanc", "orthanc-dicomweb"], lambda: bool(_orthanc_binary() and os.path.exists(PLUGIN)))
    work = tmp_path_factory.mktemp("orthanc")
    http_port = free_port()
    config = {
        "Name": "sam2tune-test", "HttpPort": http_port, "DicomPort": free_port(), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "StorageDirectory": str(work / "db"), "IndexDirectory": str(work / "db"),
        "Plugins": [PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    log = open(work / "orthanc.log", "w")
    proc = subprocess.Popen([_orthanc_binary(), str(work / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(base + "/dicom-web/studies", timeout=2).read()
            break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"Orthanc did not serve /dicom-web within 30s:\n{(work / 'orthanc.log').read_text()[-3000:]}")
    yield base + "/dicom-web"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
