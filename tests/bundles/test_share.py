"""Hand-over zip (``python -m sam2tune.bundles export``) and the download round trip (``monai.bundle download``)."""

from __future__ import annotations

import functools
import http.server
import importlib.metadata
import json
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
import torch

from sam2tune.bundles.__main__ import main as bundles_main
from sam2tune.bundles.export import BundleExportError, export_bundle

REPO = Path(__file__).resolve().parents[2]
BUNDLE = "optic_cup_fundus_sam2"
SOURCE = REPO / "bundles" / BUNDLE
SOURCE_VERSION = json.loads((SOURCE / "configs" / "metadata.json").read_text())["version"]
TINY = ["--sam2_variant", "tiny", "--image_size", "64", "--amp", "false"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished run: ckpt/model.pt from a tiny SAM2Segmenter (the bundle's network at 64 px), eval/summary.json."""
    from sam2tune.networks import SAM2Segmenter

    root = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    net = SAM2Segmenter("tiny", 64, in_channels=3, num_prompt_tokens=1)
    (root / "ckpt").mkdir()
    torch.save(net.state_dict(), root / "ckpt" / "model.pt")
    (root / "eval").mkdir()
    summary = {"n": 4, "n_scored": 4, "mean_dice": 0.8125, "std_dice": 0.05, "median_dice": 0.81, "mean_iou": 0.7,
               "empty_ground_truth": 0, "per_class": {"cup": {"mean_dice": 0.8125}}, "seconds": 1.5}
    (root / "eval" / "summary.json").write_text(json.dumps(summary))
    return root


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    """The zip written by the command line, verbatim: export --bundle <b> --ckpt_dir D --out dist/ --eval_summary S."""
    out = tmp_path_factory.mktemp("dist")
    argv = ["export", "--bundle", BUNDLE, "--ckpt_dir", str(run_dir / "ckpt"), "--out", str(out),
            "--eval_summary", str(run_dir / "eval" / "summary.json")]
    assert bundles_main(argv) == 0
    (zip_path,) = out.glob("*.zip")
    return zip_path


def _expected_version() -> str:
    major, minor, patch = SOURCE_VERSION.split(".")
    return f"{major}.{minor}.{int(patch) + 1}"


def test_zip_has_the_model_zoo_layout_and_updated_metadata(exported, run_dir):
    """<b>/configs/*, docs/*, LICENSE, large_files.yml, models/model.pt; version, changelog, sam2tune, eval_metrics."""
    assert exported.name == f"{BUNDLE}_v{_expected_version()}.zip"
    with zipfile.ZipFile(exported) as zf:
        names = set(zf.namelist())
        meta = json.loads(zf.read(f"{BUNDLE}/configs/metadata.json"))
        weights = zf.read(f"{BUNDLE}/models/model.pt")
    configs = {f"{BUNDLE}/configs/{p.name}" for p in (SOURCE / "configs").iterdir() if p.is_file()}
    assert configs <= names and f"{BUNDLE}/configs/inference.json" in names
    assert {f"{BUNDLE}/LICENSE", f"{BUNDLE}/large_files.yml", f"{BUNDLE}/docs/README.md"} <= names
    assert all(n.startswith(f"{BUNDLE}/") for n in names)
    assert not any("/outputs/" in n or n.endswith(".ts") for n in names)
    assert weights == (run_dir / "ckpt" / "model.pt").read_bytes()

    assert meta["version"] == _expected_version()
    assert list(meta["changelog"])[0] == meta["version"] and SOURCE_VERSION in meta["changelog"]
    assert "mean_dice=0.8125" in meta["changelog"][meta["version"]]
    assert meta["required_packages_version"]["sam2tune"] == importlib.metadata.version("sam2tune")
    assert meta["required_packages_version"]["sam2"] == "1.1.0"  # the bundle's own pins are kept
    assert meta["eval_metrics"]["mean_dice"] == 0.8125 and meta["eval_metrics"]["mean_iou"] == 0.7
    assert "seconds" not in meta["eval_metrics"] and "per_class" not in meta["eval_metrics"]


def test_exported_metadata_passes_verify_metadata(exported, tmp_path):
    """The new metadata.json still validates against the shipped schema (offline)."""
    from monai.bundle import verify_metadata

    with zipfile.ZipFile(exported) as zf:
        zf.extract(f"{BUNDLE}/configs/metadata.json", tmp_path)
    verify_metadata(meta_file=str(tmp_path / BUNDLE / "configs" / "metadata.json"),
                    filepath=str(REPO / "configs" / "meta_schema.json"))


def test_adapter_export_ships_the_adapter_and_the_base_checkpoint_reference(tmp_path):
    """--weights adapter: models/adapter/ + large_files.yml naming the official base checkpoint; no model.pt."""
    from sam2tune.finetune import FinetuneConfig, apply_finetune
    from sam2tune.finetune.io import save_adapter
    from sam2tune.networks import SAM2Segmenter

    net = SAM2Segmenter("tiny", 64, in_channels=3, num_prompt_tokens=1)
    apply_finetune(net, FinetuneConfig(strategy="prompt"))
    save_adapter(net, str(tmp_path / "ckpt" / "adapter"))
    zip_path = export_bundle(SOURCE, tmp_path / "ckpt", tmp_path / "dist", weights="auto", version="1.0.0",
                             changelog="prompt-tuned on site data")
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        large = zf.read(f"{BUNDLE}/large_files.yml").decode()
        meta = json.loads(zf.read(f"{BUNDLE}/configs/metadata.json"))
    assert {
        f"{BUNDLE}/models/adapter/adapter_config.json",
        f"{BUNDLE}/models/adapter/adapter_model.safetensors",
    } <= names
    assert f"{BUNDLE}/models/model.pt" not in names
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in large
    assert 'path: "models/sam2.1_hiera_tiny.pt"' in large
    assert meta["version"] == "1.0.0" and meta["changelog"]["1.0.0"] == "prompt-tuned on site data"


def test_bad_inputs_are_refused_with_the_reason(run_dir, tmp_path):
    """No weights, a non-sam2tune model.pt, a reused version, an expression string: clear errors, no zip."""
    with pytest.raises(BundleExportError, match="model.pt not found"):
        export_bundle(BUNDLE, tmp_path, tmp_path / "dist", weights="full")
    torch.save({"model": {"image_encoder.x": torch.zeros(1)}}, tmp_path / "model.pt")
    with pytest.raises(BundleExportError, match="not a sam2tune SAM2Segmenter state_dict"):
        export_bundle(BUNDLE, tmp_path, tmp_path / "dist")
    with pytest.raises(BundleExportError, match="already in"):
        export_bundle(BUNDLE, run_dir / "ckpt", tmp_path / "dist", version=SOURCE_VERSION)
    with pytest.raises(BundleExportError, match="refused"):
        export_bundle(BUNDLE, run_dir / "ckpt", tmp_path / "dist", changelog="$__import__('os')")
    assert not (tmp_path / "dist").exists()
    assert bundles_main(["export", "--bundle", "no_such_bundle", "--ckpt_dir", str(tmp_path), "--out",
                         str(tmp_path / "dist")]) == 2


@pytest.fixture()
def http_server(exported):
    """Serve the zip's folder on 127.0.0.1 (an ephemeral port) from a thread; yields the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(exported.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SAM2TUNE_BUNDLES"}
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def _stamp(path: Path) -> tuple[int, int] | None:
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None


@pytest.mark.slow
def test_download_round_trip_then_inference_matches_the_source_bundle(
    exported, run_dir, http_server, tmp_path, bundle_tools
):
    """monai.bundle download --url from a local server; the bundle lands whole and infers as the source bundle did."""
    bundle_dir, elsewhere = tmp_path / "downloaded", tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = f"{http_server}/{exported.name}"
    _python(["-m", "monai.bundle", "download", "--name", BUNDLE, "--url", url, "--bundle_dir", str(bundle_dir)],
            cwd=elsewhere)
    got = bundle_dir / BUNDLE
    for rel in ("configs/inference.json", "configs/train.json", "configs/metadata.json", "LICENSE", "docs/README.md"):
        assert (got / rel).is_file(), rel
    assert (got / "models" / "model.pt").read_bytes() == (run_dir / "ckpt" / "model.pt").read_bytes()
    assert json.loads((got / "configs" / "metadata.json").read_text())["version"] == _expected_version()

    # The source bundle (checkout, the run's ckpt_dir; in-process) and the downloaded copy (run by the CLI from a
    # folder outside the checkout, no --bundle_root, no paths: its bundle_root is the folder it was downloaded to, so
    # it reads its own docs/sample.jpg and models/model.pt and writes to its own outputs/) give the same mask.
    sample = str(SOURCE / "docs" / "sample.jpg")
    assert (got / "docs" / "sample.jpg").read_bytes() == (SOURCE / "docs" / "sample.jpg").read_bytes()
    tiny = {"sam2_variant": "tiny", "image_size": 64, "amp": False}
    checkout_mask = _stamp(SOURCE / "outputs" / "inference" / "sample_mask.png")
    bundle_tools.run_workflow(BUNDLE, ["inference"], ckpt_dir=str(run_dir / "ckpt"), input_path=sample,
                              output_dir=str(tmp_path / "src"), **tiny)
    _python(["-m", "monai.bundle", "run", "inferring", "--config_file", str(got / "configs" / "inference.json"), *TINY],
            cwd=elsewhere)
    src, dst = tmp_path / "src" / "sample_mask.png", got / "outputs" / "inference" / "sample_mask.png"
    assert src.is_file() and dst.is_file()
    assert src.read_bytes() == dst.read_bytes()
    assert _stamp(SOURCE / "outputs" / "inference" / "sample_mask.png") == checkout_mask  # the checkout is untouched


# ---- bundle_root: the folder a bundle lives in, never a checkout's copy by accident ----------------------------------
def test_bundle_root_of_a_copied_bundle_is_the_copy(tmp_path, monkeypatch):
    """A workflow over a copy (anywhere, no --bundle_root) resolves bundle_root to that copy, from any directory."""
    import shutil

    from sam2tune.bundles import run_workflow

    copy = tmp_path / "shared" / "my_cup_bundle"
    shutil.copytree(SOURCE / "configs", copy / "configs")
    monkeypatch.chdir(REPO)  # even from inside a checkout that holds a bundle of the same name
    monkeypatch.delenv("SAM2TUNE_BUNDLES", raising=False)
    wf = run_workflow(copy, ["inference"], run=False, workflow_type="inference")
    assert wf.bundle_root == str(copy.resolve())
    assert wf.parser.get_parsed_content("input_path") == f"{copy.resolve()}/docs/sample.jpg"
    wf = run_workflow(copy, ["inference"], run=False, workflow_type="inference", bundle_root=str(tmp_path))
    assert wf.bundle_root == str(tmp_path)  # --bundle_root wins


def test_bundle_root_outside_a_workflow_follows_the_documented_order(tmp_path, monkeypatch):
    """$SAM2TUNE_BUNDLES/<name>, else ./bundles/<name>, else the cwd when it is the bundle; else a clear error."""
    import shutil

    from sam2tune.bundles import BundleRootError, bundle_root

    monkeypatch.delenv("SAM2TUNE_BUNDLES", raising=False)
    monkeypatch.chdir(tmp_path)  # outside any checkout: no silent fallback to the one sam2tune is installed from
    with pytest.raises(BundleRootError, match="--bundle_root"):
        bundle_root(BUNDLE)
    shutil.copytree(SOURCE / "configs", tmp_path / "bundles" / BUNDLE / "configs")
    assert bundle_root(BUNDLE) == str((tmp_path / "bundles" / BUNDLE).resolve())
    monkeypatch.chdir(tmp_path / "bundles" / BUNDLE)
    assert bundle_root(BUNDLE) == str((tmp_path / "bundles" / BUNDLE).resolve())
    other = tmp_path / "site"
    shutil.copytree(SOURCE / "configs", other / BUNDLE / "configs")
    monkeypatch.setenv("SAM2TUNE_BUNDLES", str(other))
    assert bundle_root(BUNDLE) == str((other / BUNDLE).resolve())
    monkeypatch.setenv("SAM2TUNE_BUNDLES", str(tmp_path / "nowhere"))
    with pytest.raises(BundleRootError, match="SAM2TUNE_BUNDLES"):
        bundle_root(BUNDLE)


def test_workflow_whose_first_config_is_not_in_a_bundle_is_refused(tmp_path, monkeypatch, bundle_tools):
    """A first --config_file outside any bundle's configs/ cannot name the bundle: an error says what to do."""
    from sam2tune.bundles import run_workflow

    monkeypatch.delenv("SAM2TUNE_BUNDLES", raising=False)
    (tmp_path / "settings.json").write_text(json.dumps({"image_size": 64}))
    wf = run_workflow(SOURCE, [str(tmp_path / "settings.json"), "inference"], run=False, workflow_type="inference")
    with pytest.raises(Exception) as err:
        wf.bundle_root  # noqa: B018 - the property resolves bundle_root inside the workflow
    assert "list the bundle's own config first" in bundle_tools.error_chain(err.value)

