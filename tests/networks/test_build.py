"""Building SAM2 variants and loading official checkpoints: exact loads, wrong variants, missing files."""

import logging
import time

import pytest
import torch

from sam2tune.networks import (
    VARIANTS,
    SAM2Segmenter,
    build_sam2_model,
    checkpoint_variant,
    load_sam2_checkpoint,
    read_state_dict,
    sam2_config_name,
)


@pytest.fixture(scope="module")
def tiny() -> SAM2Segmenter:
    torch.manual_seed(0)
    return SAM2Segmenter("tiny", 64).eval()


@pytest.fixture(scope="module")
def official_tiny(tiny, tmp_path_factory) -> str:
    """An 'official' checkpoint file: {"model": SAM2Base state_dict}, as Meta distributes them."""
    path = tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": tiny.sam.state_dict()}, path)
    return str(path)


@pytest.mark.parametrize(
    "variant, version, name",
    [
        ("tiny", "2.1", "configs/sam2.1/sam2.1_hiera_t.yaml"),
        ("small", "2.1", "configs/sam2.1/sam2.1_hiera_s.yaml"),
        ("base_plus", "2", "configs/sam2/sam2_hiera_b+.yaml"),
        ("large", "2", "configs/sam2/sam2_hiera_l.yaml"),
    ],
)
def test_config_names(variant, version, name):
    assert sam2_config_name(variant, version) == name


def test_unknown_variant_and_version():
    with pytest.raises(ValueError, match=r"Unknown sam2_variant 'huge'.*tiny, small, base_plus, large"):
        sam2_config_name("huge")
    with pytest.raises(ValueError, match="Unknown sam2_variant"):
        SAM2Segmenter("huge", 64)
    with pytest.raises(ValueError, match="version"):
        sam2_config_name("tiny", "3")
    assert VARIANTS == ("tiny", "small", "base_plus", "large")


@pytest.mark.parametrize("size", [50, 100, 0])
def test_image_size_must_be_a_multiple_of_32(size):
    with pytest.raises(ValueError, match=f"image_size={size}.*multiple of 32"):
        build_sam2_model("tiny", size)
    with pytest.raises(ValueError, match="multiple of 32"):
        SAM2Segmenter("tiny", size)


def test_official_checkpoint_loads_exactly(tiny, official_tiny, caplog):
    torch.manual_seed(123)  # another random init, so a successful load is visible in the weights and outputs
    with caplog.at_level(logging.INFO, logger="sam2tune.networks.build"):
        seg = SAM2Segmenter("tiny", 64, pretrained_checkpoint=official_tiny).eval()
    assert "all keys matched" in caplog.text and "RANDOMLY INITIALISED" not in caplog.text
    assert all(torch.equal(v, seg.sam.state_dict()[k]) for k, v in tiny.sam.state_dict().items())
    image, boxes = torch.rand(1, 3, 64, 64), torch.tensor([[4.0, 4.0, 40.0, 50.0]])
    with torch.no_grad():
        assert torch.equal(seg(image, boxes=boxes), tiny(image, boxes=boxes))
    report = load_sam2_checkpoint(seg.sam, official_tiny, variant="tiny")  # the report behind that log line
    assert report.exact and report.variant == "tiny" and report.path == official_tiny


def test_partial_checkpoint_reports_missing_and_unexpected_keys(tiny, tmp_path):
    sd = dict(tiny.sam.state_dict())
    dropped = "sam_mask_decoder.iou_token.weight"
    del sd[dropped]
    sd["not_a_sam2_key"] = torch.zeros(1)
    torch.save({"model": sd}, tmp_path / "partial.pt")
    report = load_sam2_checkpoint(
        build_sam2_model("tiny", 64, warn_random_init=False), str(tmp_path / "partial.pt"), "tiny"
    )
    assert not report.exact
    assert report.missing_keys == [dropped] and report.unexpected_keys == ["not_a_sam2_key"]


def test_checkpoint_of_another_variant_is_refused(tmp_path):
    start = time.perf_counter()
    small = build_sam2_model("small", 64, warn_random_init=False)
    assert time.perf_counter() - start < 30  # small at 64 px builds in about a second on 2 CPU cores
    sd = small.state_dict()
    assert checkpoint_variant(sd) == "small"
    torch.save({"model": sd}, tmp_path / "sam2.1_hiera_small.pt")
    with pytest.raises(ValueError, match=r"'small'.*sam2_variant='tiny'"):
        SAM2Segmenter("tiny", 64, pretrained_checkpoint=str(tmp_path / "sam2.1_hiera_small.pt"))


def test_missing_and_unreadable_checkpoints(tmp_path):
    missing = str(tmp_path / "no_such.pt")
    with pytest.raises(FileNotFoundError, match=r"no_such\.pt.*Download"):
        SAM2Segmenter("tiny", 64, pretrained_checkpoint=missing)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.pt.*weights_only"):
        read_state_dict(str(tmp_path / "junk.pt"))
    torch.save({"model": [1, 2]}, tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds no state_dict"):
        read_state_dict(str(tmp_path / "list.pt"))


def test_checkpoint_variant_of_unknown_state_dicts():
    assert checkpoint_variant({}) is None
    assert checkpoint_variant({"image_encoder.trunk.pos_embed": torch.zeros(1, 50, 7, 7)}) is None
