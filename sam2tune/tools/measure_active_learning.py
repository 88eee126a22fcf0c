"""The fast loop as a clinician feels it: save a label, how soon does the server answer with weights that learned it?

A real server (``--conf auto_update true``) on REFUGE phantoms; a simulated annotator saves the true cup masks of N
images one by one with ``PUT /datastore/label`` (tag final). After each save the script infers (a held-out image,
box prompt) until the answer comes from weights that include that label, and records the seconds from the save to
that answer; then it scores the served model on the held-out images (Dice, box from the true mask). Reference
lines: the untrained model (before any label) and a full ``POST /train`` on the same N labels, timed from the
request to the first answer by its final weights (the first checkpoint it writes is noted too), in the same run (a
second server with an empty model folder over the same datastore, so the full path starts from the bundle's own
initialisation, not from the quick updates).
Writes <out>/learning_curve.{csv,json,png}.

    python scripts/measure_active_learning.py --labels 6 --heldout 4 --out al_out
    (the same: ``python -m sam2tune.tools.measure_active_learning ...``)

Random initialisation (no checkpoint can be downloaded): the Dice values are those of a model learning from
scratch, the timings are what the loop costs.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import time

import numpy as np
import requests
import torch
from monai.metrics import compute_dice
from monailabel.client import MONAILabelClient
from PIL import Image

from sam2tune.data.phantoms.refuge import write_refuge_phantoms
from sam2tune.monailabel.server import start_server, stop_server
from sam2tune.plots.learning import plot_learning_curve
from sam2tune.prompts.simulate import mask_to_box
from sam2tune.utils.atomic import atomic_write_csv, atomic_write_json

MODEL = "optic_cup_fundus_sam2"


def cup_truth(case_dir: str) -> np.ndarray:
    """The bundle's label rule on a phantom case: the 7 raters' cup masks averaged, thresholded at 0.5."""
    raters = sorted(glob.glob(os.path.join(case_dir, "*_seg_cup_*_cropped.jpg")))
    return np.mean([np.asarray(Image.open(p).convert("L")) > 127 for p in raters], 0) >= 0.5


def held_out_dice(client: MONAILabelClient, truths: dict[str, np.ndarray]) -> tuple[float, dict]:
    """Mean Dice of the served model on the held-out images (box prompt from the true mask), and the last answer."""
    dices, params = [], {}
    for image_id, truth in truths.items():
        box = [float(v) for v in mask_to_box(truth)]
        path, params = client.infer(MODEL, image_id, {"roi": box, "reset": True})
        pred = np.asarray(Image.open(path)) > 0
        dice = compute_dice(torch.from_numpy(pred)[None, None].float(), torch.from_numpy(truth)[None, None].float(),
                            ignore_empty=False)
        dices.append(float(dice.item()))
    return statistics.mean(dices), params


def served_request(client: MONAILabelClient, image_id: str, box: list[float]) -> tuple[dict, float]:
    """One infer -> (its `weights`, the time it was answered)."""
    _, params = client.infer(MODEL, image_id, {"roi": box, "reset": True})
    return params["weights"], time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and write the learning curve.

    Args:
        argv: command-line arguments (default: sys.argv[1:]).

    Returns:
        The exit status.
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", type=int, default=6, help="images the annotator labels, one by one")
    p.add_argument("--heldout", type=int, default=4, help="images the served model is scored on")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--variant", default="tiny")
    p.add_argument("--update_steps", type=int, default=30)
    p.add_argument("--update_learning_rate", type=float, default=1e-3)
    p.add_argument("--train_epochs", type=int, default=5, help="epochs of the full POST /train reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="al_out")
    args = p.parse_args(argv)
    if args.labels < 2 or args.heldout < 1:
        p.error("--labels must be >= 2 (the full /train keeps one for validation) and --heldout >= 1.")
    out = os.path.abspath(args.out)
    phantoms, studies = os.path.join(out, "phantoms"), os.path.join(out, "studies")
    write_refuge_phantoms(phantoms, cases=args.labels + args.heldout, seed=args.seed, size=96)
    os.makedirs(studies, exist_ok=True)
    cases = sorted(glob.glob(os.path.join(phantoms, "REFUGE", "*", "*")))
    truths = {}
    for case in cases:
        image_id = os.path.basename(case)
        shutil.copy(os.path.join(case, f"{image_id}_cropped.jpg"), os.path.join(studies, f"{image_id}.jpg"))
        truths[image_id] = cup_truth(case)
    ids = sorted(truths)
    rng = np.random.default_rng(args.seed)
    order = [ids[i] for i in rng.permutation(len(ids))]
    labelled, heldout = order[: args.labels], {i: truths[i] for i in order[args.labels:]}
    probe = next(iter(heldout))
    probe_box = [float(v) for v in mask_to_box(heldout[probe])]
    conf = {"models": MODEL, "image_size": args.image_size, "sam2_variant": args.variant, "device": "cpu",
            "auto_update": "true", "update_steps": args.update_steps,
            "update_learning_rate": args.update_learning_rate, "max_epochs": args.train_epochs,
            "finetune": "full", "learning_rate": 1e-3}
    proc, url = start_server(studies, os.path.join(out, "model"), os.path.join(out, "server.log"), conf)
    rows = []
    try:
        client = MONAILabelClient(url, tmpdir=os.path.join(out, "client"))
        untrained, _ = held_out_dice(client, heldout)
        rows.append({"labels": 0, "path": "untrained", "seconds_to_served": 0.0, "heldout_dice": untrained})
        print(f"untrained: held-out Dice {untrained:.3f}", flush=True)
        for n, image_id in enumerate(labelled, 1):
            label = os.path.join(out, "labels", f"{image_id}.png")
            os.makedirs(os.path.dirname(label), exist_ok=True)
            Image.fromarray(truths[image_id].astype(np.uint8)).save(label)
            t0 = time.perf_counter()
            request = client.save_label(image_id, label, tag="final")["quick_update"][MODEL]
            while True:  # the first answer by weights that include this label
                weights, t1 = served_request(client, probe, probe_box)
                if weights.get("source") == "quick update" and weights.get("request", 0) >= request:
                    break
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError(f"no quick update within 600 s: {requests.get(url + '/info/').json()}")
            dice, _ = held_out_dice(client, heldout)
            rows.append({"labels": n, "path": "quick update", "seconds_to_served": round(t1 - t0, 3),
                         "heldout_dice": dice})
            print(f"label {n} ({image_id}): served after {t1 - t0:.2f} s, held-out Dice {dice:.3f}", flush=True)
    finally:
        stop_server(proc)
    # the full path on the same labels, from the bundle's own initialisation (not from the quick-updated model.pt):
    # a second server with an empty model folder over the same datastore
    conf["auto_update"] = "false"
    proc, url = start_server(studies, os.path.join(out, "model_full"), os.path.join(out, "server_full.log"), conf)
    try:
        client = MONAILabelClient(url, tmpdir=os.path.join(out, "client"))
        t0 = time.perf_counter()
        client.train_start(MODEL, {"max_epochs": args.train_epochs})
        first = None
        while True:  # until the job ends; the first answer by weights it wrote is noted on the way
            weights, t1 = served_request(client, probe, probe_box)
            if first is None and weights.get("source") == "model.pt":
                first = t1 - t0
            if client.train_status().get("status") in ("DONE", "ERROR"):
                break
            if time.perf_counter() - t0 > 3600:
                raise RuntimeError(f"POST /train did not finish within an hour: {client.train_status()}")
            time.sleep(1.0)
        status = client.train_status()
        if status.get("status") != "DONE":
            raise RuntimeError(f"POST /train failed: {status}")
        weights, t1 = served_request(client, probe, probe_box)  # the first answer by the final weights
        dice, _ = held_out_dice(client, heldout)
        rows.append({"labels": args.labels, "path": "full /train", "seconds_to_served": round(t1 - t0, 3),
                     "heldout_dice": dice, "first_weights_s": None if first is None else round(first, 3)})
        print(f"full /train on {args.labels} labels: final weights served after {t1 - t0:.2f} s (first checkpoint "
              f"after {first if first is None else round(first, 2)} s), held-out Dice {dice:.3f}")
    finally:
        stop_server(proc)
    quick = [r["seconds_to_served"] for r in rows if r["path"] == "quick update"]
    full = next(r for r in rows if r["path"] == "full /train")
    summary = {"args": vars(args), "rows": rows, "labelled": labelled, "heldout": list(heldout),
               "quick_median_s": statistics.median(quick), "full_train_s": full["seconds_to_served"],
               "full_over_quick": round(full["seconds_to_served"] / statistics.median(quick), 2),
               "quick_dice_last": rows[args.labels]["heldout_dice"], "full_dice": full["heldout_dice"],
               "untrained_dice": untrained}
    atomic_write_json(summary, os.path.join(out, "learning_curve.json"))
    atomic_write_csv(os.path.join(out, "learning_curve.csv"), rows, ["labels", "path", "seconds_to_served",
                                                                     "heldout_dice", "first_weights_s"])
    plot_learning_curve(rows, os.path.join(out, "learning_curve.png"))
    print(f"quick update: median {summary['quick_median_s']:.2f} s from save to served; full /train "
          f"{summary['full_train_s']:.1f} s ({summary['full_over_quick']}x); held-out Dice quick "
          f"{summary['quick_dice_last']:.3f} vs full {summary['full_dice']:.3f} vs untrained {untrained:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
