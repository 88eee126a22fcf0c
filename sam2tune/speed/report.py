"""Markdown tables of benchmark results (written from the JSON, never typed by hand)."""

from __future__ import annotations

import json
import os

# Issue 9 targets (CUDA, SAM2.1 hiera-tiny, 1024 px, batch 16): row id -> (check, text).
TARGETS = {
    "bf16_full": (None, "baseline"),
    "bf16_full_compile": (lambda r: r["images_per_s"] >= 300, ">= 300 images/s"),
    "bf16_lora_ckpt": (lambda r: (r.get("memory_vs_bf16_full") or 9) <= 0.5, "memory <= 50 % of bf16 full"),
    "bf16_adapter_ckpt": (lambda r: (r.get("memory_vs_bf16_full") or 9) <= 0.5, "memory <= 50 % of bf16 full"),
    "bf16_cached": (lambda r: r["images_per_s"] >= 1500, ">= 1500 images/s"),
    "bf16_encode": (lambda r: r["images_per_s"] >= 600, ">= 600 images/s"),
    "bf16_encode_compile": (lambda r: r["images_per_s"] >= 600, ">= 600 images/s"),
    "3d_propagation": (lambda r: r.get("seconds", 1e9) <= 3.0, "<= 3 s"),
}


def _num(value, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def _target(row: dict, gpu_1024: bool) -> str:
    check, text = TARGETS.get(row["id"], (None, ""))
    if not text or check is None or not gpu_1024 or row["status"] != "ok":
        return text
    return f"{text}: {'met' if check(row) else 'not met'}"


def rows_table(result: dict) -> str:
    """Markdown table of the step rows of one benchmark result."""
    settings = result["settings"]
    gpu_1024 = result["device_type"] == "cuda" and settings["image_size"] == 1024
    lines = [
        "| row | precision | batch | images/s | step ms | peak GiB | × bf16 full (speed) | × bf16 full (memory) | "
        "GFLOP/image | "
        "fraction of bf16 peak | issue 9 target (CUDA, 1024 px, batch 16) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["status"] != "ok":
            why = r.get("reason") or r.get("error", "")
            lines.append(f"| {r['name']} | – | – | {r['status']}: {why[:120]} | | | | | | | {_target(r, gpu_1024)} |")
            continue
        if "images_per_s" not in r:  # 3D propagation row: a time, not a rate
            lines.append(
                f"| {r['name']} | – | – | {_num(r.get('seconds'), '{:.2f}')} s | | | | | | | {_target(r, gpu_1024)} |"
            )
            continue
        lines.append(
            f"| {r['name']} | {r.get('precision', '–')} | {r['batch_size']} | {r['images_per_s']:.1f} | "
            f"{r['step_ms_median']:.0f} | "
            f"{r['peak_mem_gib']:.2f} | {_num(r['speed_vs_bf16_full'], '{:.2f}')} | "
            f"{_num(r['memory_vs_bf16_full'], '{:.2f}')} | {r['gflop_per_image']:.1f} | "
            f"{_num(r['fraction_of_peak'], '{:.1%}')} | {_target(r, gpu_1024)} |"
        )
    return "\n".join(lines)


def pipeline_table(result: dict) -> str:
    """Markdown table of the data-pipeline rows (loader-only rate, loader + step rate, time waiting on data)."""
    if not result.get("pipeline"):
        return "(pipeline benchmark not run)"
    lines = ["| loading | loader images/s | loader + step images/s | time waiting on data |", "|---|---|---|---|"]
    for p in result["pipeline"]:
        if "error" in p:
            lines.append(f"| {p['name']} | error: {p['error'][:120]} | | |")
            continue
        lines.append(f"| {p['name']} | {_num(p['loader_images_per_s'])} | {p['step_images_per_s']:.1f} | "
                     f"{p['data_wait_fraction']:.0%} |")
    return "\n".join(lines)


def inference_table(result: dict) -> str:
    """Markdown of the inference rows: MC dropout with one encoding, propagation vs SAM2VideoPredictor, scaling."""
    inf = result.get("inference") or {}
    if not inf:
        return "(inference rows not run)"
    lines = ["| row | before / reference s | sam2tune s | ratio | check |", "|---|---|---|---|---|"]
    mc, pr = inf.get("mc_dropout", {}), inf.get("predictor", {})
    if "error" in mc or "error" in pr:
        lines.append(f"| failed | {mc.get('error', '')} {pr.get('error', '')} | | | |")
    if "reencode_s" in mc:
        lines.append(f"| {mc['name']}: re-encode every pass vs one encoding | {mc['reencode_s']:.3f} | "
                     f"{mc['encode_once_s']:.3f} | {mc['speedup']:.2f}x | max abs diff {mc['max_abs_diff']:.1e} |")
    if "predictor_s" in pr:
        lines.append(f"| {pr['name']} | {pr['predictor_s']:.3f} | {pr['sam2tune_s']:.3f} | {pr['speedup']:.2f}x | "
                     f"mask IoU {pr['mask_agreement']:.3f} |")
    scaling = inf.get("scaling")
    if isinstance(scaling, list) and scaling:
        lines += ["", "| curve | objects | slices | seconds per volume |", "|---|---|---|---|"]
        lines += [f"| {r['curve']} | {r['objects']} | {r['depth']} | {r['seconds']:.3f} |" for r in scaling]
    return "\n".join(lines)


def section(result: dict) -> str:
    """A Markdown section for one run: device, command, settings, both tables."""
    s = result["settings"]
    memory = "torch.cuda.max_memory_allocated" if result["device_type"] == "cuda" else "process RSS (cumulative)"
    step_row = result["pipeline"][0]["row"] if result.get("pipeline") and "row" in result["pipeline"][0] else "–"
    return "\n".join([
        f"### {result['device']} — {s['variant']}, {s['image_size']} px, batch {s['batch_size']}",
        "",
        f"Command: `{result['command']}`  ",
        f"torch {result['torch']}; {s['steps']} timed steps after {s['warmup']} warm-up steps; peak memory = {memory}; "
        f"bf16 peak used for the fraction: {_num(result.get('peak_bf16_tflops'), '{:.0f}')} TFLOP/s; "
        f"whole run {result['seconds']:.0f} s.",
        "",
        rows_table(result),
        "",
        f"Data pipeline (step: {step_row}):",
        "",
        pipeline_table(result),
        "",
        f"Inference (slices {s.get('inference_size', '–')} px; ratio = reference / sam2tune):",
        "",
        inference_table(result),
        "",
    ])


def write_markdown(results: list[dict], path: str, preamble: str = "") -> str:
    """Write `preamble` + one section per result to `path` (Markdown); return the path."""
    text = preamble.rstrip() + "\n\n" + "\n".join(section(r) for r in results)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def load_results(paths: list[str]) -> list[dict]:
    """Read benchmark JSON files; missing ones raise FileNotFoundError naming the file and how to make it."""
    out = []
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"Benchmark result {p} does not exist: run scripts/benchmark.py --out {p} first.")
        with open(p) as f:
            out.append(json.load(f))
    return out
