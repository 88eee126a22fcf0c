"""Every bundle's configs/metadata.json passes ``monai.bundle verify_metadata`` offline.

``verify_metadata`` downloads the schema named in metadata.json unless ``--filepath`` points at an existing file,
so the project ships ``configs/meta_schema.json`` and the check runs with no network.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "configs/meta_schema.json"
META_FILES = sorted(REPO_ROOT.glob("bundles/*/configs/metadata.json"))

# verify_metadata warns that the (local) schema file has no hash to check: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:No hash value provided")

VERIFIED = "metadata is verified with no error."
SKIPPED_DOWNLOAD = f"File exists: {SCHEMA}, skipped downloading."

# The smallest metadata the specification accepts: every mandatory key, one input and one output.
MINIMAL_META = {
    "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json",
    "version": "0.0.1",
    "monai_version": "1.6.1",
    "pytorch_version": "2.14.1",
    "numpy_version": "1.26.4",
    "required_packages_version": {"sam2": "1.1.0"},
    "task": "test task",
    "description": "test description",
    "authors": "sam2tune contributors",
    "copyright": "Copyright (c) sam2tune contributors",
    "network_data_format": {
        "inputs": {
            "image": {
                "type": "image",
                "format": "magnitude",
                "num_channels": 3,
                "spatial_shape": [64, 64],
                "dtype": "float32",
                "value_range": [0, 1],
                "is_patch_data": False,
                "channel_def": {"0": "R", "1": "G", "2": "B"},
            }
        },
        "outputs": {
            "pred": {
                "type": "image",
                "format": "segmentation",
                "num_channels": 1,
                "spatial_shape": [64, 64],
                "dtype": "float32",
                "value_range": [],
                "is_patch_data": False,
                "channel_def": {"0": "foreground logits"},
            }
        },
    },
}


def verify(meta_file: Path | str) -> subprocess.CompletedProcess:
    """Run the contract command from the repository root and capture what it prints."""
    cmd = [sys.executable, "-m", "monai.bundle", "verify_metadata", "--meta_file", str(meta_file), "--filepath", SCHEMA]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def write_meta(tmp_path: Path, meta: dict) -> Path:
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(meta, indent=2))
    return path


def test_schema_file_is_draft07_json():
    schema = json.loads((REPO_ROOT / SCHEMA).read_text())
    assert schema["$schema"].startswith("http://json-schema.org/draft-07/schema")
    for key in (
        "version",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "required_packages_version",
        "task",
        "description",
        "authors",
        "copyright",
        "network_data_format",
    ):
        assert key in schema["required"], key


def test_at_least_one_bundle_has_metadata():
    assert META_FILES, "no bundles/*/configs/metadata.json found"


@pytest.mark.parametrize("meta_file", META_FILES, ids=lambda p: p.parent.parent.name)
def test_bundle_metadata_verifies_offline(meta_file: Path):
    from monai.bundle import verify_metadata

    # in-process (the command line costs a fresh interpreter each: checked once, below); raises on any violation
    verify_metadata(meta_file=str(meta_file), filepath=str(REPO_ROOT / SCHEMA))


def test_bundle_metadata_verifies_on_the_command_line():
    """The contract command itself, from the repository root, on one bundle."""
    meta_file = next(p for p in META_FILES if p.parent.parent.name == "optic_cup_fundus_sam2")
    result = verify(meta_file.relative_to(REPO_ROOT))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert SKIPPED_DOWNLOAD in output  # the shipped schema was used, nothing was downloaded
    assert VERIFIED in output


@pytest.mark.parametrize("meta_file", META_FILES, ids=lambda p: p.parent.parent.name)
def test_bundle_metadata_names_pred_and_image(meta_file: Path):
    # monai.bundle reads `_meta_#network_data_format#inputs#image` and `...#outputs#pred` by these names.
    fmt = json.loads(meta_file.read_text())["network_data_format"]
    assert "image" in fmt["inputs"]
    assert "pred" in fmt["outputs"]


def test_minimal_metadata_verifies(tmp_path: Path):
    from monai.bundle import verify_metadata

    # raises ValueError on any schema violation; the negative cases below start from this same dict
    verify_metadata(meta_file=str(write_meta(tmp_path, MINIMAL_META)), filepath=str(REPO_ROOT / SCHEMA))


def drop(meta: dict, path: tuple[str, ...]) -> dict:
    """A deep copy of ``meta`` without the key at ``path``."""
    meta = copy.deepcopy(meta)
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return meta


def test_missing_required_field_fails_on_the_command_line(tmp_path: Path):
    result = verify(write_meta(tmp_path, drop(MINIMAL_META, ("task",))))
    output = result.stdout + result.stderr
    # monai 1.6.1 re-raises the jsonschema ValidationError as a ValueError; the CLI exits with status 1.
    assert result.returncode == 1, output
    assert "ValueError: 'task' is a required property" in output
    assert "Failed validating" in output
    assert VERIFIED not in output


REQUIRED_PATHS = [
    ("version",),
    ("monai_version",),
    ("pytorch_version",),
    ("numpy_version",),
    ("required_packages_version",),
    ("task",),
    ("description",),
    ("authors",),
    ("copyright",),
    ("network_data_format",),
    ("network_data_format", "inputs"),
    ("network_data_format", "outputs"),
] + [
    ("network_data_format", "inputs", "image", key)
    for key in (
        "type",
        "format",
        "num_channels",
        "spatial_shape",
        "dtype",
        "value_range",
        "is_patch_data",
        "channel_def",
    )
]


@pytest.mark.parametrize("path", REQUIRED_PATHS, ids=lambda p: ".".join(p))
def test_missing_required_field_fails(tmp_path: Path, path: tuple[str, ...]):
    from monai.bundle import verify_metadata

    meta_file = write_meta(tmp_path, drop(MINIMAL_META, path))
    with pytest.raises(ValueError, match=f"'{path[-1]}' is a required property"):
        verify_metadata(meta_file=str(meta_file), filepath=str(REPO_ROOT / SCHEMA))


@pytest.mark.parametrize(
    "path, value",
    [
        (("version",), 1),
        (("authors",), ""),
        (("network_data_format", "inputs", "image", "num_channels"), "3"),
        (("network_data_format", "inputs", "image", "is_patch_data"), "false"),
        (("network_data_format", "inputs", "image", "value_range"), [0, 1, 2]),
        (("network_data_format", "outputs"), {}),
    ],
    ids=["version-int", "authors-empty", "num_channels-str", "is_patch_data-str", "value_range-3", "outputs-empty"],
)
def test_wrong_type_fails(tmp_path: Path, path: tuple[str, ...], value):
    from monai.bundle import verify_metadata

    meta = copy.deepcopy(MINIMAL_META)
    parent = meta
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    with pytest.raises(ValueError, match="Failed validating"):
        verify_metadata(meta_file=str(write_meta(tmp_path, meta)), filepath=str(REPO_ROOT / SCHEMA))


@pytest.mark.parametrize("meta_file", META_FILES, ids=lambda p: p.parent.parent.name)
def test_bundle_declares_the_dimension_it_serves(meta_file: Path):
    """`data_dimension` (what the MONAI Label app serves) agrees with what inference.json loads: photos <=> 2."""
    from sam2tune.monailabel.model import data_dimension

    meta = json.loads(meta_file.read_text())
    inference = (meta_file.parent / "inference.json").read_text()
    assert meta["data_dimension"] == (2 if "LoadJPEGd" in inference else 3)
    assert data_dimension(meta) == meta["data_dimension"]


@pytest.mark.parametrize("value", [1, 4, "3", True, None])
def test_bad_data_dimension_is_refused_by_name(value):
    from sam2tune.monailabel.model import data_dimension

    with pytest.raises(ValueError, match="data_dimension must be 2"):
        data_dimension({"data_dimension": value}, "m.json")


def test_dimension_falls_back_to_monai_labels_rule():
    from sam2tune.monailabel.model import data_dimension

    shape = {"network_data_format": {"inputs": {"image": {"spatial_shape": [96, 96, 96]}}}}
    assert data_dimension(shape) == 3
    shape["network_data_format"]["inputs"]["image"]["spatial_shape"] = [512, 512]
    assert data_dimension(shape) == 2
