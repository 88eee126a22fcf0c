"""A task where clicks are the only way to the answer, and whether a model trained on it follows clicks, per seed.

A fine-tune on the bundles' phantoms learns to ignore prompts (one bright object per image: the image alone gives the
answer), so it cannot show whether clicks reach a model the right way round. Here photos hold two identical bright
discs A and B: a positive click on A means "A" (or, less often, both) and a box around both means "both" (or, less
often, only A); only corrective clicks settle the rest. Training is the package's interactive loop
(``sam2tune.networks.interactive.decode_rounds``: corrective clicks from the error, the previous low-res mask fed
back, ``CorrectionRoundsLoss(DiceCELoss)``) with the ``decoder_only`` strategy (prompt encoder too) on embeddings
computed once, from random initial weights (no checkpoint can be downloaded here); AdamW lr 1e-3 after a linear
warm-up, gradients clipped (SAM2's trainer clips too). ``tests/monailabel_app/test_server_click_following.py``
serves such a model and sends Slicer-style clicks; this tool measures the training itself over seeds.

Each seed s seeds the initialisation, the training photos and the training; the model is then checked on held-out
photos (rng 1000) as the server test asks, in model pixels, a refinement being every click so far plus the previous
low-res mask: click on A -> A > 0.8 and B < 0.3 ("click"); + positive click on B -> B up by > 0.5, A > 0.8 ("grow");
box around both -> A > 0.8, B > 0.5 ("box"); + negative click on B -> B down by > 0.2, A > 0.7 ("shrink").

    python scripts/click_following.py --seeds 1,2,3,4,5 --out click_following_out
    (the same: ``python -m sam2tune.tools.click_following ...``)

Writes <out>/click_following.{csv,md,json}: per seed the mean fraction of A and B in the mask at each step and the
photos passing each check. ~7 min a seed on 2 CPU cores (2,500 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from sam2tune.finetune import apply_finetune
from sam2tune.losses import CorrectionRoundsLoss
from sam2tune.networks.interactive import decode_rounds
from sam2tune.utils import atomic_write_json
from sam2tune.utils.atomic import atomic_write_csv, atomic_write_text
from sam2tune.utils.flags import int_list

SIZE = 96  # photo size; the model runs at 64 px
STEPS, WARMUP, CLIP, LR, BATCH, ROUNDS, TRAIN_IMAGES = 2500, 100, 1.0, 1e-3, 16, 2, 128
CHECKS = ("click", "grow", "box", "shrink")
COLUMNS = ["seed", "click_a", "click_b", "grow_a", "grow_b", "box_a", "box_b", "shrink_a", "shrink_b",
           *[f"{c}_pass" for c in CHECKS], "photos", "train_s"]


def two_discs(rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """A photo with two identical discs at least 30 px apart.

    Returns:
        (photo (3, SIZE, SIZE) float32 in [0, 1] in 8-bit steps (as a server reads a PNG), [mask A, mask B]
        (SIZE, SIZE) bool, centres (2, 2) xy, radii (2,)).
    """
    yy, xx = np.mgrid[:SIZE, :SIZE]
    while True:
        centres, radii = rng.uniform(18, SIZE - 18, size=(2, 2)), rng.uniform(8, 12, size=2)
        if np.hypot(*(centres[0] - centres[1])) > radii.sum() + 30:
            break
    img = rng.normal(0.15, 0.03, (SIZE, SIZE))
    discs = []
    for (x, y), r in zip(centres, radii, strict=True):
        disc = np.hypot(xx - x, yy - y) <= r
        img[disc] = rng.normal(0.75, 0.03, int(disc.sum()))
        discs.append(disc)
    img = np.round(np.clip(img, 0, 1) * 255) / 255
    return np.repeat(img[None], 3, 0).astype(np.float32), discs, centres, radii


def box_around(centres: np.ndarray, radii: np.ndarray) -> list[float]:
    """Centres (2, 2) xy and radii (2,) of the discs -> xyxy box 2 px around both."""
    lo, hi = (centres - radii[:, None]).min(0) - 2, (centres + radii[:, None]).max(0) + 2
    return [float(v) for v in np.round([lo[0], lo[1], hi[0], hi[1]])]


def _first_prompts(data: list, idx: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """Targets (B, 1, H, W) and first prompts: half a positive click on disc A (target A, 30 %: both), half a box
    around both (target both, 40 %: A only) -> (target, boxes (B, 4) NaN = none, points (B, 1, 2), labels (B, 1))."""
    targets, boxes, points, labels = [], [], [], []
    for i in idx:
        _, discs, centres, radii = data[i]
        a = int(rng.integers(2))
        if rng.random() < 0.5:
            target = discs[a] | discs[1 - a] if rng.random() < 0.3 else discs[a]
            boxes.append([np.nan] * 4), points.append([centres[a]]), labels.append([1])
        else:
            target = discs[a] if rng.random() < 0.4 else discs[a] | discs[1 - a]
            boxes.append(box_around(centres, radii)), points.append([[0.0, 0.0]]), labels.append([-1])
        targets.append(target[None])
    as_tensor = lambda v: torch.tensor(np.array(v), dtype=torch.float32)  # noqa: E731
    return as_tensor(targets), as_tensor(boxes), as_tensor(points), torch.tensor(labels)


def train_click_following(network: torch.nn.Module, seed: int, steps: int = STEPS, warmup: int = WARMUP,
                          clip: float | None = CLIP) -> None:
    """Train `network` (a ``SAM2Segmenter`` at 64 px, freshly built) in place on the two-disc task.

    Args:
        network: trained in place (``decoder_only`` + prompt encoder); left in eval mode.
        seed: seeds the training photos, prompts and torch (not the initialisation: seed before building).
        steps: optimiser steps of BATCH photos, each with ROUNDS corrective clicks.
        warmup: linear learning-rate warm-up steps (0: none).
        clip: gradient norm clipping (None: none).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    apply_finetune(network, {"strategy": "decoder_only", "train_prompt_encoder": True})
    data = [two_discs(rng) for _ in range(TRAIN_IMAGES)]
    with torch.no_grad():  # the encoder is frozen: its embeddings are computed once
        feats = network.encode(torch.tensor(np.array([d[0] for d in data])))
    params = [p for p in network.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=LR)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda k: min(1.0, (k + 1) / warmup) if warmup else 1.0)
    # DiceCELoss per round: on all rounds at once MONAI takes the rounds for classes (a softmax cross-entropy across
    # them), and a model trained that way ignores every prompt
    loss_fn = CorrectionRoundsLoss(DiceCELoss(sigmoid=True))
    network.train()
    for _ in range(steps):
        idx = rng.integers(TRAIN_IMAGES, size=BATCH)
        target, boxes, points, labels = _first_prompts(data, idx, rng)
        batch = {"image_embed": feats["image_embed"][idx], "high_res_feats": [f[idx] for f in feats["high_res_feats"]]}
        loss = loss_fn(decode_rounds(network, batch, target, ROUNDS, (SIZE, SIZE), boxes, points, labels), target)
        optimiser.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimiser.step()
        schedule.step()
    network.eval()


def _answer(network, feats: dict, discs: list[np.ndarray], box, points: list, labels: list, mask=None) -> tuple:
    """One decoder pass on a held-out photo -> (fraction of disc A in the mask, of disc B, low-res logits (1,1,h,w))."""
    scale = (network.image_size / SIZE, network.image_size / SIZE)
    points, labels = torch.tensor(np.array([points], np.float32)), torch.tensor([labels])
    low, _ = network.decode(feats, box, points, labels, mask, scale)
    m = (F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0] > 0).numpy()
    return float(m[discs[0]].mean()), float(m[discs[1]].mean()), low[:, :1]


@torch.no_grad()
def evaluate_click_following(network: torch.nn.Module, photos: int = 10, seed: int = 1000) -> list[dict]:
    """The four checks of the module docstring on `photos` held-out photos -> a row per photo (fractions of A and B
    in the mask at each step, each check passed or not)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(photos):
        img, discs, c, r = two_discs(rng)
        feats = network.encode(torch.tensor(img[None]))
        box = torch.tensor([box_around(c, r)])
        a1, b1, low = _answer(network, feats, discs, None, [c[0]], [1])
        a2, b2, _ = _answer(network, feats, discs, None, [c[0], c[1]], [1, 1], low)  # refinement: + click, mask
        a3, b3, low = _answer(network, feats, discs, box, [[0.0, 0.0]], [-1])
        a4, b4, _ = _answer(network, feats, discs, box, [c[1]], [0], low)
        rows.append({"click_a": a1, "click_b": b1, "grow_a": a2, "grow_b": b2, "box_a": a3, "box_b": b3,
                     "shrink_a": a4, "shrink_b": b4, "click": a1 > 0.8 and b1 < 0.3, "grow": b2 > b1 + 0.5 and a2 > 0.8,
                     "box": a3 > 0.8 and b3 > 0.5, "shrink": b4 < b3 - 0.2 and a4 > 0.7})
    return rows


def build_network(seed: int) -> torch.nn.Module:
    """The optic-cup bundle's served architecture (sam2 tiny at 64 px, random initialisation seeded with `seed`)."""
    from sam2tune.monailabel.model import BundleModel  # the server's own builder
    from sam2tune.monailabel.settings import AppSettings

    torch.manual_seed(seed)
    settings = AppSettings(model_dir=os.devnull, sam2_variant="tiny", image_size=64, device="cpu")
    return BundleModel("optic_cup_fundus_sam2", settings).network()


def run_seed(seed: int, **train) -> dict:
    """Build (seed), train (seed, `train` overrides), evaluate -> one row of the table."""
    network = build_network(seed)
    start = time.perf_counter()
    train_click_following(network, seed, **train)
    seconds = time.perf_counter() - start
    rows = evaluate_click_following(network)
    out = {"seed": seed, **{k: round(float(np.mean([r[k] for r in rows])), 3) for k in COLUMNS[1:9]}}
    out.update({f"{c}_pass": int(sum(r[c] for r in rows)) for c in CHECKS})
    return out | {"photos": len(rows), "train_s": round(seconds, 1)}


def write_tables(results: list[dict], out: str, setting: dict) -> None:
    """<out>/click_following.{csv,json,md}."""
    atomic_write_csv(os.path.join(out, "click_following.csv"), results, COLUMNS)
    atomic_write_json({"setting": setting, "seeds": results}, os.path.join(out, "click_following.json"))
    lines = ["| seed | click A / B | + click B: A / B | box A / B | box + neg. click B: A / B | passed (of photos) "
             "click / grow / box / shrink |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['seed']} | {r['click_a']:.2f} / {r['click_b']:.2f} | {r['grow_a']:.2f} / {r['grow_b']:.2f}"
                     f" | {r['box_a']:.2f} / {r['box_b']:.2f} | {r['shrink_a']:.2f} / {r['shrink_b']:.2f} | "
                     + " / ".join(str(r[f"{c}_pass"]) for c in CHECKS) + f" (of {r['photos']}) |")
    atomic_write_text(os.path.join(out, "click_following.md"), "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int_list, default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--warmup", type=int, default=WARMUP, help="linear warm-up steps (0: none)")
    parser.add_argument("--clip", type=float, default=CLIP, help="gradient norm clipping (0: none)")
    parser.add_argument("--out", default="click_following_out")
    args = parser.parse_args(argv)
    seeds = args.seeds
    if args.steps < 1 or args.warmup < 0 or args.clip < 0:
        parser.error("--steps must be >= 1, --warmup and --clip >= 0")
    setting = {"steps": args.steps, "warmup": args.warmup, "clip": args.clip or None}
    os.makedirs(args.out, exist_ok=True)
    print(f"Click-following study, {setting}, seeds {seeds}: RANDOM INITIALISATION (no checkpoint).", flush=True)
    results = []
    for seed in seeds:
        results.append(run_seed(seed, **setting))
        print(json.dumps(results[-1]), flush=True)
        write_tables(results, args.out, setting)  # after every seed
    print(open(os.path.join(args.out, "click_following.md")).read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
