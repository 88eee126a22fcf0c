"""Inference on a new CT volume: NIfTI file or DICOM series + a prompts JSON -> label map on the input grid.

The prompts file format is sam2tune.inference.prompts'. Each organ is propagated through the volume from its
prompted slices with SAM2's memory (sam2tune.networks.propagator); the outputs are sam2tune.inference.outputs'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from sam2tune.data.btcv import BTCV_LABELS
from sam2tune.engines.volume_inferers import VolumeInferer
from sam2tune.inference.outputs import case_name, write_volume_outputs
from sam2tune.inference.prompts import read_prompts
from sam2tune.io.volumes import read_volume
from sam2tune.transforms.ct import DEFAULT_WINDOW, window_hu
from sam2tune.utils.dist import unwrap
from sam2tune.utils.flags import as_bool

logger = logging.getLogger(__name__)


def run_volume_inference(
    network: torch.nn.Module,
    input_path: str,
    prompts_file: str | dict,
    output_dir: str,
    device: str | torch.device = "cpu",
    amp: bool | str = False,
    window=DEFAULT_WINDOW,
    save_npy: bool | str = False,
    dicom_seg: bool | str = True,
    chunk_size: int = 16,
    organ_names: dict | None = None,
    inferer: VolumeInferer | None = None,
    postprocessing: Callable[[dict], dict] | None = None,
) -> dict:
    """Segment one volume from its prompts by propagating each organ through the slices.

    Args:
        network: a SAM2Segmenter (1-channel) with its weights loaded.
        input_path: a NIfTI file or a DICOM series folder.
        prompts_file: a prompts JSON file or the same mapping (sam2tune.inference.prompts).
        output_dir: where the outputs go.
        device: torch device.
        amp: bfloat16 autocast on CUDA ("true"/"false" strings accepted).
        window: HU window (low, high).
        save_npy: also write per-slice .npy label maps.
        dicom_seg: write a DICOM SEG for DICOM input.
        chunk_size: slices encoded per image-encoder call.
        organ_names: {id: name} (default: the 13 BTCV organs).
        inferer: the bundle's ``inferer`` (a ``VolumeInferer``: (1, 1, D, H, W) volume -> (1, C, D, H, W) scores);
            default ``VolumeInferer(max organ id + 1, chunk_size)``.
        postprocessing: the bundle's ``postprocessing`` on ``{"pred": (C, D, H, W) scores}`` -> ``{"pred":
            (1, D, H, W) labels}``; default the argmax over channels.

    Returns:
        {"input", "seconds", "organs": {name: voxels}, "nifti", "dicom_seg", "npy_dir", "result_json"}.

    Raises:
        ValueError: an empty volume or a bad prompts file (the message names the file and the fix).
    """
    names = {int(k): v for k, v in (organ_names or BTCV_LABELS).items()}
    vol = read_volume(str(input_path))
    if vol.array.size == 0 or min(vol.array.shape) == 0:
        raise ValueError(f"{input_path}: the volume is empty (shape {vol.array.shape}).")
    ids, prompts = read_prompts(prompts_file, vol.array.shape[0])
    net = unwrap(network).to(device).eval()
    volume = torch.from_numpy(window_hu(vol.array, window))[:, None].to(device)
    device = torch.device(device)
    use_amp = as_bool(amp, "amp") and device.type == "cuda"
    t0 = time.perf_counter()
    inferer = inferer or VolumeInferer(max(max(names), max(ids)) + 1, chunk_size)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
        scores = inferer(volume.permute(1, 0, 2, 3)[None], net, prompts, ids)[0]  # (C, D, H, W)
        pred = (
            postprocessing({"pred": scores})["pred"] if postprocessing is not None else scores.argmax(0, keepdim=True)
        )
        labels = np.asarray(torch.as_tensor(pred).cpu(), dtype=np.uint8)[0]
    seconds = time.perf_counter() - t0
    result = {"input": str(input_path), "seconds": seconds,
              "organs": {names.get(i, str(i)): int((labels == i).sum()) for i in ids}}
    result = write_volume_outputs(labels, vol, output_dir, case_name(str(input_path)),
                                  {i: names.get(i, str(i)) for i in ids}, result, "sam2tune abdomen_ct_sam2",
                                  dicom_seg=as_bool(dicom_seg, "dicom_seg"), save_npy=as_bool(save_npy, "save_npy"))
    logger.info("Segmented %s in %.2f s -> %s", input_path, seconds, result["nifti"])
    return result


__all__ = ["run_volume_inference"]
