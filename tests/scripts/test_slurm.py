"""scripts/hpc/train_slurm.sh on a real single-node Slurm (slurmctld + slurmd started here), else skipped with why."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "hpc" / "train_slurm.sh"
DAEMONS = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd")


def _skip(reason: str):
    print(f"SKIP test_slurm: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_slurm() -> None:
    """Install Debian's slurm-wlm when the daemons are missing (root only, bounded by timeouts)."""
    if all(os.path.exists(d) for d in DAEMONS) and shutil.which("sbatch"):
        return
    if os.geteuid() != 0:
        _skip("slurm-wlm is not installed and this test is not root, so it cannot apt-get install it")
    if not shutil.which("apt-get"):
        _skip("slurm-wlm is not installed and there is no apt-get here")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm"]
    try:
        if subprocess.run(cmd, capture_output=True, timeout=240, env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=120, env=env)
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
            if proc.returncode != 0:
                _skip(f"apt-get install slurm-wlm failed: {proc.stderr.strip()[-300:]}")
    except subprocess.TimeoutExpired:
        _skip("apt-get install slurm-wlm timed out")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node cluster (auth/none, no munge) -> its environment for sbatch; daemons stopped after."""
    _ensure_slurm()
    if os.geteuid() != 0:
        _skip("slurmd must run as root to launch jobs and this test is not root")
    root = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname().split(".")[0]
    for d in ("state", "spool", "log"):
        (root / d).mkdir()
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=sam2tune_test", f"SlurmctldHost={host}", "AuthType=auth/none", "CredType=cred/none",
        "SlurmUser=root", "SlurmdUser=root", f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/pgid", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU", "ReturnToService=2", "SchedulerType=sched/builtin", "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    procs = [subprocess.Popen([DAEMONS[0], "-D", "-i", "-f", str(conf)], **quiet),
             subprocess.Popen([DAEMONS[1], "-D", "-f", str(conf), "-N", host], **quiet)]
    try:
        deadline, state = time.time() + 30, ""
        while time.time() < deadline:
            dead = [p.args[0] for p in procs if p.poll() is not None]
            if dead:
                logs = "".join((root / "log" / f).read_text()[-400:] for f in ("slurmctld.log", "slurmd.log")
                               if (root / "log" / f).exists())
                _skip(f"{dead} exited at start-up in this sandbox: {logs}")
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            _skip(f"the Slurm node never became idle in 30 s (sinfo says {state!r})")
        yield {"env": env, "host": host, "root": root}
    finally:
        for p in procs:  # only the daemons this fixture started
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_local_dry_run_and_bad_target():
    """Without Slurm the script prints the plain local torchrun command; an unknown target names the fix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["SAM2TUNE_DRY_RUN"] = "1"
    proc = subprocess.run([str(SCRIPT), "optic_cup_fundus_sam2", "--max_epochs", "1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "--nnodes 1 --nproc_per_node 1" in proc.stdout and "multi_gpu_train.json" in proc.stdout
    bad = subprocess.run([str(SCRIPT), "no_such_bundle"], cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "neither resnet, yolo nor a bundle" in bad.stderr


def test_sbatch_runs_torchrun_on_optic_cup(slurm, tmp_path):
    """sbatch --wait the script with a tiny CPU ResNet job on optic-cup phantoms: rendezvous from Slurm, model saved."""
    from sam2tune.data.phantoms.refuge import write_refuge_phantoms

    data = write_refuge_phantoms(str(tmp_path / "ph"), cases=6, seed=0, size=64)["root"]
    run, log = tmp_path / "run", tmp_path / "job.out"
    proc = subprocess.run(
        ["sbatch", "--wait", "--cpus-per-task", "1", "-o", str(log), str(SCRIPT), "resnet",
         "--bundle", "optic_cup_fundus_sam2", "--dataset_dir", data, "--out", str(run), "--tiny",
         "--max_epochs", "1", "--no_evaluate", "--set", "val_interval=2"],
        cwd=REPO, env=slurm["env"], capture_output=True, text=True, timeout=300)
    text = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, f"{proc.stderr}\n{text[-3000:]}"
    assert f"nodes={slurm['host']} nnodes=1 nproc_per_node=1 rendezvous={slurm['host']}:" in text
    stats = json.loads((run / "run_stats.json").read_text())
    assert stats["world_size"] == 1 and stats["model"] == "resnet" and stats["train_iterations"] >= 1
    assert (run / "models" / "model.pt").stat().st_size > 1_000_000
