"""Measure infer latency per call (2D photo, 3D volume) on a real server at tiny/64 on CPU."""
# Run: .venv/bin/python tests/monailabel_app/measure_latency.py   (not collected by pytest). Run as a script, Python
# puts this folder first on sys.path, so the server helpers come from the conftest.py beside it.
import glob
import os
import shutil
import statistics
import tempfile
import time

from conftest import start_server, stop_server
from monailabel.client import MONAILabelClient

from sam2tune.data.phantoms.lung_nodule import write_lung_nodule_phantoms
from sam2tune.data.phantoms.refuge import write_refuge_phantoms

root = tempfile.mkdtemp()
studies = os.path.join(root, "studies")
os.makedirs(studies)
write_refuge_phantoms(os.path.join(root, "r"), cases=4, seed=0, size=256)
for p in glob.glob(os.path.join(root, "r/REFUGE/*/*/*_cropped.jpg")):
    if "_seg_" not in p:
        shutil.copy(p, os.path.join(studies, os.path.basename(p).replace("_cropped", "")))
write_lung_nodule_phantoms(os.path.join(root, "l"), cases=1, seed=0, size=64, slices=24)
vol = sorted(glob.glob(os.path.join(root, "l", "**", "imagesTr", "*.nii.gz"), recursive=True))[0]
shutil.copy(vol, os.path.join(studies, "ct0.nii.gz"))
proc, url = start_server(studies, os.path.join(root, "model"), os.path.join(root, "log"),
                         {"models": "all", "image_size": 64, "sam2_variant": "tiny", "device": "cpu"})
try:
    c = MONAILabelClient(url, tmpdir=root)
    for name, model, image, params in [
        ("2D photo 256x256, 1 click", "optic_cup_fundus_sam2", "T0001", {"foreground": [[128, 128]]}),
        ("3D volume 64x64x24, 1 click + propagation", "lung_nodule_ct_sam2", "ct0", {"foreground": [[32, 32, 12]]}),
    ]:
        c.infer(model, image, params)  # warm-up (builds the network)
        ts = []
        for _ in range(10):
            t = time.perf_counter()
            _, p = c.infer(model, image, params)
            ts.append(time.perf_counter() - t)
        print(f"{name}: median {statistics.median(ts):.3f} s, min {min(ts):.3f}, max {max(ts):.3f} (10 calls); "
              f"server-side {p['latencies']['total']} s; fg {p['foreground_voxels']}")
finally:
    stop_server(proc)
