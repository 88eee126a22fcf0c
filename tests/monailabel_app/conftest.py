"""A real MONAI Label server on 127.0.0.1 (free port) over REFUGE phantom studies, killed by the fixture finaliser."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(studies: str, model_dir: str, log_path: str, conf: dict, timeout: float = 120.0,
                 env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`monailabel start_server --app monailabel_app ...` in its own process group
    -> (process, url) once /info/ answers.

    `env` adds environment variables (e.g. MONAI Label settings such as MONAI_LABEL_DICOMWEB_CACHE_PATH).
    """
    port = free_port()
    bindir = os.path.dirname(sys.executable)
    cmd = [os.path.join(bindir, "monailabel"), "start_server", "--app", str(REPO / "monailabel_app"), "--studies",
           studies, "--host", "127.0.0.1", "--port", str(port)]
    for k, v in conf.items():
        cmd += ["--conf", k, str(v)]
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "SAM2TUNE_ML_MODEL_DIR": model_dir,
           "PYTHONPATH": str(REPO), **(env or {})}
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(url + "/info/", timeout=5).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    pytest.fail(f"MONAI Label server did not answer /info/ within {timeout}s:\n{Path(log_path).read_text()[-4000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server's process group (it may have spawned a training process), then make sure it is gone."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


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
