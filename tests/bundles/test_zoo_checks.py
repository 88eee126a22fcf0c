"""The MONAI model zoo's CI checks (Project-MONAI/model-zoo ci/verify_bundle.py, mode "full") on every bundle, offline.

Each bundle is copied to ``<zoo>/models/<bundle>`` as in a model-zoo checkout, with ``eval/schema.json`` from
configs/meta_schema.json (the zoo's prepare_schema puts it there), its large files stood in locally (an existing file
makes ``download_url`` skip the download, as in the zoo's download_large_files) and ``models/model.pt`` written from
the inference network_def as the zoo's _produce_fake_weights does. Then, in the zoo's order: directory layout,
version and changelog, ``verify_metadata`` against the schema, properties, ``verify_net_in_out`` and ``ckpt_export``
(TorchScript) -> ``torch.jit.load`` -> outputs match the eager model. The same ``monai.bundle`` calls the zoo's script
makes, with two differences for a fast CPU test: the tiny SAM2 at 64 px (overrides), and no network.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BUNDLES = sorted(p.name for p in (REPO / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())
SIZE = 64
# Every bundle at the CPU-tiny setting; spatial_shape of the fake input follows (verify_net_in_out reads metadata).
TINY = {
    "sam2_variant": "tiny",
    "image_size": SIZE,
    "_meta_#network_data_format#inputs#image#spatial_shape": [SIZE, SIZE],
}
TS_ATOL = 1e-4  # traced graphs run eager's float32 arithmetic: gaps seen were 0; room for other CPUs' kernels only
pytestmark = [pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")]


def _files(bundle_path: Path) -> dict:
    return {"meta_file": str(bundle_path / "configs" / "metadata.json"),
            "config_file": str(bundle_path / "configs" / "inference.json"), "bundle_root": str(bundle_path)}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    """``<zoo>/models/<bundle>`` copies, model_info.json, eval/schema.json, stood-in large files, fake model.pt."""
    from monai.apps.utils import download_url
    from monai.bundle import ConfigParser

    models = tmp_path_factory.mktemp("zoo") / "models"
    models.mkdir()
    (models / "model_info.json").write_text("{}")
    for name in BUNDLES:
        dst = models / name
        shutil.copytree(REPO / "bundles" / name, dst, ignore=shutil.ignore_patterns("outputs", "models", "eval"))
        (dst / "eval").mkdir()
        shutil.copy(REPO / "configs" / "meta_schema.json", dst / "eval" / "schema.json")
        # The zoo's download_large_files, verbatim in effect: an existing stand-in is kept ("File exists ... skipped").
        parser = ConfigParser()
        parser.read_config(str(dst / "large_files.yml"))
        for entry in parser.get()["large_files"]:
            entry = {k: v for k, v in entry.items() if not (k in ("hash_val", "hash_type") and v == "")}
            target = dst / entry.pop("path")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"stand-in for " + entry["url"].encode())
            download_url(filepath=str(target), fuzzy=True, **entry)
        # The zoo's _produce_fake_weights: the inference network_def's own state_dict, before any model.pt exists.
        assert not (dst / "models" / "model.pt").exists()
        parser = ConfigParser()
        parser.read_config(f=str(dst / "configs" / "inference.json"))
        parser.read_meta(f=str(dst / "configs" / "metadata.json"))
        parser.update(TINY)
        torch.manual_seed(0)
        torch.save(parser.get_parsed_content("network_def").state_dict(), dst / "models" / "model.pt")
    return models


@pytest.mark.parametrize("bundle", BUNDLES)
def test_directory_version_and_metadata(zoo, bundle):
    """verify_bundle_directory, verify_version_changes and verify_metadata_format, as the zoo runs them."""
    from monai.bundle import verify_metadata

    path = zoo / bundle
    for rel in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.json"):
        assert (path / rel).is_file(), f"{bundle}: {rel} is missing (the zoo requires / prefers it)"
    meta = json.loads((path / "configs" / "metadata.json").read_text())
    assert "version" in meta and "changelog" in meta
    assert meta["version"] in meta["changelog"], f"{bundle}: version {meta['version']} has no changelog entry"
    assert f"{bundle}_v{meta['version']}" not in json.loads((zoo / "model_info.json").read_text())
    verify_metadata(meta_file=str(path / "configs" / "metadata.json"), filepath=str(path / "eval" / "schema.json"))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_requires_sam2tune_at_the_package_version(bundle):
    """required_packages_version names sam2tune at pyproject.toml's version (what a zoo user must pip install)."""
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    meta = json.loads((REPO / "bundles" / bundle / "configs" / "metadata.json").read_text())
    assert meta["required_packages_version"].get("sam2tune") == version


@pytest.mark.parametrize("bundle", BUNDLES)
def test_properties(zoo, bundle):
    """The zoo checks app properties only for metadata ``supported_apps`` (none here); the inference properties every
    workflow needs resolve, and bundle_root is the zoo copy itself with no --bundle_root given."""
    from sam2tune.bundles import run_workflow

    path = zoo / bundle
    meta = json.loads((path / "configs" / "metadata.json").read_text())
    assert "supported_apps" not in meta, "supported_apps set: add the zoo's per-app properties check here"
    wf = run_workflow(path, ["inference"], run=False, workflow_type="inference",  # the bundle's metadata.json
                      logging_file=path / "configs" / "logging.conf", **TINY)
    assert Path(wf.bundle_root) == path.resolve()
    assert wf.device is not None and wf.inferer is not None and isinstance(wf.network_def, torch.nn.Module)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_verify_net_in_out(zoo, bundle):
    """verify_data_shape: the metadata's image (channels, 2D slice) goes through network_def; pred channels match."""
    from monai.bundle import verify_net_in_out

    verify_net_in_out(net_id="network_def", device="cpu", **_files(zoo / bundle), **TINY)


@pytest.mark.slow  # ~30 s a bundle on 2 CPU cores: two traces and a script per export
@pytest.mark.parametrize("bundle", BUNDLES)
def test_ckpt_export_torchscript_loads_and_matches_eager(zoo, bundle):
    """verify_torchscript: ckpt_export (no use_trace, as the zoo calls it) -> torch.jit.load -> outputs as eager."""
    from monai.bundle import ConfigParser, ckpt_export

    from sam2tune.handlers.finetuned_loader import FinetunedCheckpointLoader
    from sam2tune.networks.export import BoxPromptedSegmenter, example_inputs

    path = zoo / bundle
    ts_path = path / "models" / "verify_model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts_path), ckpt_file=str(path / "models" / "model.pt"),
                **_files(path), **TINY)
    loaded = torch.jit.load(str(ts_path))

    parser = ConfigParser()
    parser.read_config(f=str(path / "configs" / "inference.json"))
    parser.read_meta(f=str(path / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(path), "ckpt_dir": str(path / "models"), **TINY})
    torch.manual_seed(1)  # other random weights than model.pt's: the eager model is right only if loading works
    net = parser.get_parsed_content("network_def")
    FinetunedCheckpointLoader(str(path / "models" / "model.pt"), net).load()
    segmenter = net.segmenter if isinstance(net, BoxPromptedSegmenter) else net
    eager = BoxPromptedSegmenter(segmenter).eval()
    image, boxes = example_inputs(segmenter, batch=2)
    with torch.no_grad():
        diffs = {"box": (loaded(image, boxes) - eager(image, boxes)).abs().max().item(),
                 "no prompt": (loaded(image) - eager(image)).abs().max().item()}
        shape = tuple(loaded(image, boxes).shape)
    print(f"{bundle}: TorchScript max abs diff vs eager {diffs}")
    assert shape == (2, 1, SIZE, SIZE)
    assert all(d <= TS_ATOL for d in diffs.values()), diffs
