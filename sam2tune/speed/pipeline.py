"""Data-pipeline benchmark: is loading REFUGE JPEGs the bottleneck of a training step, and what fixes it."""

from __future__ import annotations

import logging
import math
import os
import statistics
import tempfile
import time

import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.transforms import Compose, Resized

from sam2tune.data.refuge import refuge_datalist
from sam2tune.speed.measure import synchronize
from sam2tune.speed.training import ROWS, build_network, effective_bf16, make_step, synthetic_batch
from sam2tune.transforms import LoadJPEGd, LoadRaterMeand, SimulatePromptsd

logger = logging.getLogger(__name__)


def pipeline_transforms(image_size: int) -> Compose:
    """The reference bundle's load + resize + box-prompt transforms (no augmentation), for timing."""
    return Compose(
        [
            LoadJPEGd(keys="image"),
            LoadRaterMeand(keys="label", threshold=0.5),
            Resized(keys=["image", "label"], spatial_size=(image_size, image_size), mode=("bilinear", "nearest")),
            SimulatePromptsd(keys="label", mode="box", box_jitter=0.1),
        ]
    )


def _datalist(data_dir: str | None, cases: int, source_size: int, workdir: str) -> list[dict]:
    if data_dir is None:
        from sam2tune.data.phantoms.refuge import write_refuge_phantoms

        data_dir = os.path.join(workdir, "refuge")
        # About 75 % of phantom cases land in Training-400; write enough for the requested batches.
        write_refuge_phantoms(data_dir, cases=math.ceil(cases / 0.75) + 2, seed=0, size=source_size)
    return refuge_datalist(data_dir, "train", val_fraction=0.0)


def _loader_configs(num_workers: int, cuda: bool) -> list[tuple[str, str, dict]]:
    pin = {"pin_memory": cuda}
    return [
        ("Dataset, workers 0", "dataset", {"num_workers": 0}),
        (f"Dataset, workers {num_workers}, pinned, persistent", "dataset",
         {"num_workers": num_workers, "persistent_workers": num_workers > 0, **pin}),
        (f"CacheDataset (decoded images), workers {num_workers}, pinned, persistent", "cache",
         {"num_workers": num_workers, "persistent_workers": num_workers > 0, **pin}),
    ]


def _epoch(loader, device: torch.device, step=None) -> tuple[float, float]:
    """One pass -> (images/s from the median batch time, fraction of the pass spent waiting for the loader).

    The median batch (fetch + step) resists bursts from other processes on a shared machine.
    """
    per_batch, waits = [], []
    synchronize(device)
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        image = batch["image"].as_tensor().to(device, non_blocking=True)
        waits.append(time.perf_counter() - t0)
        if step is not None:
            data = {"image": image, "label": batch["label"].as_tensor().to(device, non_blocking=True),
                    "boxes": torch.as_tensor(batch["box"]).float().to(device, non_blocking=True)}
            step(data)
        synchronize(device)
        per_batch.append((time.perf_counter() - t0, image.shape[0]))
    if not per_batch:
        raise ValueError("The data loader yielded no batch: fewer cases than batch_size.")
    seconds, images = statistics.median(t for t, _ in per_batch), per_batch[0][1]
    return images / seconds, sum(waits) / sum(t for t, _ in per_batch)


def benchmark_pipeline(
    image_size: int,
    batch_size: int,
    device: torch.device,
    variant: str = "tiny",
    batches: int = 4,
    num_workers: int = 4,
    data_dir: str | None = None,
    source_size: int = 512,
    row_id: str = "bf16_decoder_only",
    cpu_bf16: bool = False,
) -> list[dict]:
    """Step time with synthetic tensors vs real JPEG loading (plain, workers + pinned + persistent, decoded cache).

    Each loader config reports loader-only images/s and images/s of loader + the `row_id` training step, with the
    fraction of time spent waiting on data. The second pass of each loader is timed (the first warms workers/caches).
    """
    row = next(r for r in ROWS if r.id == row_id)
    results = []
    with tempfile.TemporaryDirectory(prefix="sam2tune_pipeline_") as workdir:
        datalist = _datalist(data_dir, batch_size * batches, source_size, workdir)[: batch_size * batches]
        if len(datalist) < batch_size:
            raise ValueError(
                f"Pipeline benchmark needs >= {batch_size} training cases in {data_dir}, found {len(datalist)}."
            )
        net = build_network(variant, image_size, row, device)
        fixed = synthetic_batch(batch_size, image_size, device)
        holder = {"batch": fixed}
        inner = make_step(row, net, holder["batch"], device, bf16=effective_bf16(row, device, cpu_bf16))

        def step(data: dict) -> None:
            holder["batch"].update(data)  # make_step's closure reads the same dict, so new data flows in
            inner()

        for _ in range(2):
            inner()
        times = []
        for _ in range(batches):
            synchronize(device)
            t0 = time.perf_counter()
            inner()
            synchronize(device)
            times.append(time.perf_counter() - t0)
        results.append({"name": "synthetic tensors on device (no loading)",
                        "step_images_per_s": batch_size / statistics.median(times),
                        "loader_images_per_s": None, "data_wait_fraction": 0.0})
        transform = pipeline_transforms(image_size)
        for name, kind, kwargs in _loader_configs(num_workers, device.type == "cuda"):
            try:
                if kind == "cache":
                    ds = CacheDataset(
                        datalist, transform, cache_rate=1.0, num_workers=max(num_workers, 1), progress=False
                    )
                else:
                    ds = Dataset(datalist, transform)
                loader = DataLoader(ds, batch_size=batch_size, shuffle=False, drop_last=True, **kwargs)
                _epoch(loader, device)  # warm-up pass: starts persistent workers
                loader_rate, _ = _epoch(loader, device)
                step_rate, wait = _epoch(loader, device, step)
                results.append({"name": name, "loader_images_per_s": loader_rate, "step_images_per_s": step_rate,
                                "data_wait_fraction": wait})
                del loader, ds
            except Exception as e:  # one failing config (e.g. no shared memory for workers) must not lose the others
                logger.exception("pipeline config %r failed", name)
                results.append({"name": name, "error": f"{type(e).__name__}: {e}"[:500]})
    for r in results:
        r.update({"row": row.name, "batch_size": batch_size, "image_size": image_size})
    return results
