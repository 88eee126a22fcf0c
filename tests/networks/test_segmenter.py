"""SAM2Segmenter: output shapes per prompt kind, channels, resizing, errors, model.pt reload, MC dropout."""

import copy

import pytest
import torch

from sam2tune.networks import ChannelAdapter, SAM2Segmenter, add_hiera_adapters, mc_dropout, mc_dropout_predict


@pytest.fixture(scope="module")
def net() -> SAM2Segmenter:
    torch.manual_seed(0)
    return SAM2Segmenter("tiny", 64).eval()


@pytest.fixture(scope="module")
def dropout_net() -> SAM2Segmenter:
    """5 input channels and dropout 0.3: covers the N-channel constructor path and MC dropout together."""
    torch.manual_seed(0)
    return SAM2Segmenter("tiny", 64, in_channels=5, dropout=0.3).eval()


IMAGE = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
BOXES = torch.tensor([[4.0, 6.0, 40.0, 50.0], [10.0, 10.0, 60.0, 30.0]])
POINTS = torch.tensor([[[20.0, 20.0], [50.0, 40.0]], [[5.0, 5.0], [30.0, 30.0]]])
LABELS = torch.tensor([[1, 0], [1, -1]])
MASK = (torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1)) > 0.5).float()


@pytest.mark.parametrize(
    "prompts",
    [
        {"boxes": BOXES},
        {"point_coords": POINTS, "point_labels": LABELS},
        {"mask_prompt": MASK},
        {"boxes": BOXES, "point_coords": POINTS, "point_labels": LABELS, "mask_prompt": MASK},
        {
            "boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [float("nan")] * 4]),
            "point_coords": POINTS,
            "point_labels": LABELS,
        },
    ],
    ids=["box", "points", "mask", "all", "nan_box"],
)
def test_output_shape_per_prompt_kind(net, prompts):
    with torch.no_grad():
        out = net(IMAGE, **prompts)
    assert out.shape == (2, 1, 64, 64) and torch.isfinite(out).all()


def test_multimask_and_prompt_tokens(net):
    multi = copy.deepcopy(net)
    multi.multimask_output = True
    multi.prompt_tokens = torch.nn.Parameter(torch.randn(2, 256) * 0.02)
    with torch.no_grad():
        assert multi(IMAGE[:1], boxes=BOXES[:1]).shape == (1, 3, 64, 64)
        assert multi(IMAGE).shape == (2, 3, 64, 64)  # learned tokens alone are a prompt


def test_prompt_errors(net):
    with pytest.raises(ValueError, match="No prompt given"):
        net(IMAGE)
    with pytest.raises(ValueError, match="point_labels"):
        net(IMAGE, point_coords=POINTS)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        net(IMAGE[0], boxes=BOXES)


@pytest.mark.parametrize("channels", [3, 5])
def test_input_channels(net, dropout_net, channels):
    model = net
    if channels == 5:
        model = dropout_net
        assert model.channel_adapter.proj.weight.shape == (3, 5, 1, 1)
    with torch.no_grad():
        out = model(torch.rand(1, channels, 64, 64), boxes=BOXES[:1])
    assert out.shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match=f"Expected {channels} input channels"):
        model(torch.rand(2, channels + 1, 64, 64), boxes=BOXES)


def test_one_channel_equals_its_grey_rgb(net):
    grey = copy.deepcopy(net)
    grey.channel_adapter = ChannelAdapter(1)
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(grey(image, boxes=BOXES[:1]), net(image.expand(-1, 3, -1, -1), boxes=BOXES[:1]))
    with pytest.raises(ValueError, match="Expected 1 input channels"):
        grey(torch.rand(1, 3, 64, 64), boxes=BOXES[:1])


def test_output_is_resized_back_to_the_input_size(net):
    image = torch.rand(1, 3, 80, 48)
    with torch.no_grad():
        out = net(image, boxes=torch.tensor([[5.0, 10.0, 40.0, 70.0]]), mask_prompt=torch.ones(1, 1, 80, 48))
    assert out.shape == (1, 1, 80, 48)


def test_dropout_argument_is_checked():
    with pytest.raises(ValueError, match="dropout"):
        SAM2Segmenter("tiny", 64, dropout=1.0)


def test_model_pt_with_adapters_and_prompt_tokens_reloads_into_a_plain_segmenter(net, tmp_path):
    trained = copy.deepcopy(net)
    add_hiera_adapters(trained.sam.image_encoder.trunk, 16)
    trained.prompt_tokens = torch.nn.Parameter(torch.randn(1, 256) * 0.1)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if ".adapter." in name:
                p.add_(torch.randn_like(p) * 0.05)
        expected = trained(IMAGE[:1], boxes=BOXES[:1])
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    plain = SAM2Segmenter("tiny", 64, pretrained_checkpoint=str(tmp_path / "model.pt")).eval()
    assert plain.prompt_tokens is not None and hasattr(plain.sam.image_encoder.trunk.blocks[0], "adapter")
    with torch.no_grad():
        assert torch.allclose(plain(IMAGE[:1], boxes=BOXES[:1]), expected, atol=1e-6)
        assert not torch.allclose(net(IMAGE[:1], boxes=BOXES[:1]), expected, atol=1e-4)


def test_mc_dropout_varies_with_dropout_and_not_without(net, dropout_net):
    image5, box = torch.rand(1, 5, 64, 64), BOXES[:1]
    with torch.no_grad(), mc_dropout(dropout_net):
        a, b = dropout_net(image5, boxes=box), dropout_net(image5, boxes=box)
    assert not torch.equal(a, b)
    assert not dropout_net.training and not dropout_net.embed_dropout.training  # mode restored afterwards
    with torch.no_grad(), mc_dropout(net):
        c, d = net(IMAGE[:1], boxes=box), net(IMAGE[:1], boxes=box)
    assert torch.equal(c, d)
    mean, var = mc_dropout_predict(dropout_net, 2, image5, boxes=box)
    assert mean.shape == var.shape == (1, 1, 64, 64) and var.max() > 0
    with pytest.raises(ValueError, match="num_samples"):
        mc_dropout_predict(net, 0, IMAGE, boxes=BOXES)
