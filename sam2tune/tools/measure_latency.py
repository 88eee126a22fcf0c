"""Infer latency of a running server as clients pile up: p50 / p95 per call under 1, 5 and 20 concurrent clients.

Starts the app on loopback (sam2 tiny, random init, CPU by default) over a 2D REFUGE phantom photo and a 3D lung
phantom volume; each client is a thread with its own ``MONAILabelClient`` sending the same click request
``--calls`` times; latency is the client-side round trip. Writes <out>/latency.{json,md}.

    python scripts/measure_latency.py --clients 1,5,20 --calls 5 --out latency_out
    (the same: ``python -m sam2tune.tools.measure_latency ...``)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import os
import shutil
import time

import numpy as np
from monailabel.client import MONAILabelClient

from sam2tune.data.phantoms.lung_nodule import write_lung_nodule_phantoms
from sam2tune.data.phantoms.refuge import write_refuge_phantoms
from sam2tune.monailabel.server import start_server, stop_server
from sam2tune.utils.atomic import atomic_write_json, atomic_write_text

CASES = (("2D photo 256x256, 1 click", "optic_cup_fundus_sam2", "T0001", {"foreground": [[128, 128]]}),
         ("3D volume 64x64x24, 1 click + propagation", "lung_nodule_ct_sam2", "ct0", {"foreground": [[32, 32, 12]]}))


def _client_calls(url: str, tmpdir: str, model: str, image: str, params: dict, calls: int) -> list[float]:
    client = MONAILabelClient(url, tmpdir=tmpdir)
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        client.infer(model, image, {**params, "reset": True})
        out.append(time.perf_counter() - t0)
    return out


def measure(url: str, tmpdir: str, model: str, image: str, params: dict, clients: int, calls: int) -> dict:
    """`clients` threads, each sending `calls` infers at once -> p50 / p95 / max per call and calls per second."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(_client_calls, url, tmpdir, model, image, params, calls) for _ in range(clients)]
        latencies = [t for f in futures for t in f.result()]
    wall = time.perf_counter() - t0
    return {"clients": clients, "calls": len(latencies), "p50_s": float(np.percentile(latencies, 50)),
            "p95_s": float(np.percentile(latencies, 95)), "max_s": float(max(latencies)),
            "calls_per_s": len(latencies) / wall}


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and write the table.

    Args:
        argv: command-line arguments (default: sys.argv[1:]).

    Returns:
        The exit status.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="1,5,20")
    p.add_argument("--calls", type=int, default=5, help="infers per client")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="latency_out")
    args = p.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    if not counts or min(counts) < 1 or args.calls < 1:
        p.error("--clients takes positive integers (e.g. 1,5,20) and --calls >= 1.")
    out = os.path.abspath(args.out)
    studies = os.path.join(out, "studies")
    os.makedirs(studies, exist_ok=True)
    write_refuge_phantoms(os.path.join(out, "r"), cases=2, seed=0, size=256)
    for path in glob.glob(os.path.join(out, "r", "REFUGE", "*", "*", "*_cropped.jpg")):
        if "_seg_" not in path:
            shutil.copy(path, os.path.join(studies, os.path.basename(path).replace("_cropped", "")))
    write_lung_nodule_phantoms(os.path.join(out, "l"), cases=1, seed=0, size=64, slices=24)
    volume = sorted(glob.glob(os.path.join(out, "l", "**", "imagesTr", "*.nii.gz"), recursive=True))[0]
    shutil.copy(volume, os.path.join(studies, "ct0.nii.gz"))
    conf = {"models": "optic_cup_fundus_sam2,lung_nodule_ct_sam2", "image_size": 64, "sam2_variant": "tiny",
            "device": args.device}
    proc, url = start_server(studies, os.path.join(out, "model"), os.path.join(out, "server.log"), conf)
    rows = []
    try:
        for name, model, image, params in CASES:
            _client_calls(url, out, model, image, params, 1)  # warm-up: builds the network
            for n in counts:
                r = {"case": name, **measure(url, out, model, image, params, n, args.calls)}
                rows.append(r)
                print(f"{name}, {n} clients: p50 {r['p50_s']:.3f} s, p95 {r['p95_s']:.3f} s, "
                      f"{r['calls_per_s']:.1f} calls/s", flush=True)
    finally:
        stop_server(proc)
    atomic_write_json({"args": vars(args), "cpu_count": os.cpu_count(), "rows": rows},
                      os.path.join(out, "latency.json"))
    lines = ["| case | clients | calls | p50 s | p95 s | max s | calls/s |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['clients']} | {r['calls']} | {r['p50_s']:.3f} | {r['p95_s']:.3f} | "
              f"{r['max_s']:.3f} | {r['calls_per_s']:.1f} |" for r in rows]
    atomic_write_text(os.path.join(out, "latency.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
