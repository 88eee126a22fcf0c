"""Why is my 3D propagation poor? Per-organ, per-slice masks before the argmax, and whether SAM2's memory tells the
organs apart.

python scripts/diagnose_propagation.py --model MODEL.pt --image CT.nii.gz --label LABEL.nii.gz
       [--variant tiny] [--image_size 512] [--organs 1,2,3,6,7] [--hu_window -175,250] [--out DIR]
(the same: ``python -m sam2tune.tools.diagnose_propagation ...``)

Every organ of the label (or --organs) is prompted with a box on the middle slice of its extent and propagated both
ways, as `run evaluating` does. Writes <out>/object_slices.csv (each organ's own mask on each slice: label and predicted
voxels, Dice, object-score logit, and the label the mask mostly lies on: another organ's id there means the tracker
jumped to that organ) and <out>/memory_identity.csv (for organs sharing the most common key slice: the
pairwise relative difference of their mask memory + object pointers, and of the memory-conditioned features of the
next slice). Near-zero conditioned differences mean the tracker sees the same thing for those organs and predicts the
same mask for all of them: the memory, not the decoder, is what needs training (or pretrained weights).
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, run both diagnostics, write the CSVs -> {"rows": [...], "identity": {...}}."""
    import numpy as np
    import torch

    from sam2tune.engines import VolumePromptPrepareBatch
    from sam2tune.networks import SAM2Segmenter
    from sam2tune.networks.propagation_diagnostics import memory_identity, object_slice_table
    from sam2tune.transforms.ct import LoadVolumed

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="a bundle's model.pt (state dict of SAM2Segmenter with in_channels=1)")
    p.add_argument("--image", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--variant", default="tiny")
    p.add_argument("--image_size", type=int, default=512)
    p.add_argument("--organs", default="", help="comma-separated label ids (default: all in the label)")
    p.add_argument("--hu_window", default="-175,250")
    p.add_argument("--out", default="propagation_diagnostics")
    args = p.parse_args(argv)

    net = SAM2Segmenter(args.variant, args.image_size, in_channels=1)
    net.load_state_dict(torch.load(args.model, map_location="cpu", weights_only=True))
    net.eval()
    data = LoadVolumed(window=[float(v) for v in args.hu_window.split(",")])({"image": args.image, "label": args.label})
    volume = torch.as_tensor(np.asarray(data["image"]))[0][:, None].float()  # (D, 1, H, W)
    label = np.asarray(data["label"])[0]
    organs = [int(v) for v in args.organs.split(",") if v] or None
    # the evaluator's own prompt preparation: a box on each organ's middle slice (its largest if it skips that one)
    batch = {"image": volume[None].transpose(1, 2), "label": torch.as_tensor(label)[None, None]}
    _, _, _, kwargs = VolumePromptPrepareBatch(prompt_mode="box", organ_ids=organs)(batch)
    prompts, ids = kwargs["prompts"], kwargs["object_ids"]
    for organ in sorted(set(organs or []) - set(ids)):
        print(f"organ {organ}: not in {args.label}, skipped")
    if not ids:
        raise SystemExit(f"No organ to diagnose in {args.label}: check --organs.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = object_slice_table(net, volume, label, prompts, ids)
    with open(out / "object_slices.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for organ in ids:
        mine = [r for r in rows if r["organ"] == organ and r["offset"] != 0 and r["label_voxels"]]
        dice = np.mean([r["dice"] for r in mine]) if mine else float("nan")
        jumps = Counter(r["lands_on"] for r in rows if r["organ"] == organ and r["lands_on"] not in (-1, 0, organ))
        print(f"organ {organ}: mean Dice of its own mask on the labelled non-key slices {dice:.3f} "
              f"({len(mine)} slices)" + "".join(f"; mostly on organ {o} on {n} slices" for o, n in jumps.items()))
    key = Counter(int(pl[0].slice) for pl in prompts).most_common(1)[0][0]
    same = [i for i, pl in enumerate(prompts) if int(pl[0].slice) == key]
    step = 1 if key + 1 < volume.shape[0] else -1
    identity = {}
    if len(same) > 1 and key + step >= 0:
        identity = memory_identity(net, volume, [prompts[i][0] for i in same], step=step)
        with open(out / "memory_identity.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["organ_a", "organ_b", "memory_difference", "conditioned_difference"])
            for a in range(len(same)):
                for b in range(a + 1, len(same)):
                    writer.writerow([ids[same[a]], ids[same[b]], f"{identity['memory'][a, b]:.4f}",
                                     f"{identity['conditioned'][a, b]:.4f}"])
        print(f"key slice {key}: relative difference between organs {[ids[i] for i in same]} on slice {key + step}")
        print("  memory:\n" + np.array2string(identity["memory"].numpy(), precision=3))
        print("  memory-conditioned features:\n" + np.array2string(identity["conditioned"].numpy(), precision=3))
    print(f"wrote {out}/object_slices.csv" + (f" and {out}/memory_identity.csv" if identity else ""))
    return {"rows": rows, "identity": identity}


if __name__ == "__main__":
    main()
