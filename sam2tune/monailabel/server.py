"""Start and stop the sam2tune MONAI Label app as a real server on loopback (tests, measurement scripts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

APP_DIR = Path(__file__).resolve().parents[2] / "monailabel_app"  # the app folder of a source checkout


class ServerError(RuntimeError):
    """The server did not come up (the message holds the end of its log)."""


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(studies: str, model_dir: str, log_path: str, conf: dict, timeout: float = 120.0,
                 env: dict | None = None, app_dir: str | os.PathLike = APP_DIR) -> tuple[subprocess.Popen, str]:
    """``monailabel start_server --app <app_dir> ...`` in its own process group -> (process, url) once /info/ answers.

    Args:
        studies: the datastore (a folder, or a DICOMweb URL).
        model_dir: where the app keeps fine-tuned weights (SAM2TUNE_ML_MODEL_DIR).
        log_path: the server's stdout and stderr go here.
        conf: ``--conf`` key / value pairs.
        timeout: seconds to wait for /info/.
        env: extra environment variables (e.g. MONAI Label settings).
        app_dir: the MONAI Label app folder.

    Returns:
        (the server process, its base URL).

    Raises:
        ServerError: when /info/ does not answer in time or the process exits (with the end of the log).
    """
    port = free_port()
    bindir = os.path.dirname(sys.executable)
    repo = Path(app_dir).resolve().parent
    cmd = [os.path.join(bindir, "monailabel"), "start_server", "--app", str(app_dir), "--studies", studies,
           "--host", "127.0.0.1", "--port", str(port)]
    for k, v in conf.items():
        cmd += ["--conf", k, str(v)]
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "SAM2TUNE_ML_MODEL_DIR": model_dir,
           "PYTHONPATH": str(repo), **(env or {})}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=repo, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
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
    raise ServerError(f"MONAI Label server did not answer /info/ within {timeout}s:\n"
                      f"{Path(log_path).read_text()[-4000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server's process group (it may have spawned a training process), then make sure it is gone.

    Args:
        proc: the process ``start_server`` returned.
    """
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


__all__ = ["APP_DIR", "ServerError", "free_port", "start_server", "stop_server"]
