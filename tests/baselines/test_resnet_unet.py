"""ResNetUNet: shapes, the box channel, checkpoint round trip and clear errors; the throughput meter."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine

from sam2tune.baselines import ResNetUNet, TrainThroughput, boxes_to_channel, peak_memory_mb


def test_boxes_to_channel_marks_box_and_skips_nan_rows():
    boxes = torch.tensor([[2.0, 4.0, 6.0, 8.0], [math.nan] * 4])
    ch = boxes_to_channel(boxes, 2, 16, 16)
    assert ch.shape == (2, 1, 16, 16)
    assert ch[0, 0, 4:8, 2:6].all() and ch[0].sum() == 16  # pixel centres inside the xyxy box
    assert ch[1].sum() == 0
    with pytest.raises(ValueError, match="3 rows"):
        boxes_to_channel(torch.zeros(3, 4), 2, 16, 16)


def test_forward_shapes_and_box_changes_output():
    torch.manual_seed(0)
    net = ResNetUNet(image_size=64, in_channels=3, out_channels=1, backbone="resnet10").eval()
    x = torch.rand(2, 3, 48, 40)  # any input size: resized to 64 and back
    with torch.no_grad():
        a = net(x, boxes=torch.tensor([[5.0, 5.0, 20.0, 20.0]] * 2))
        b = net(x, boxes=torch.tensor([[math.nan] * 4] * 2))
    assert a.shape == (2, 1, 48, 40)
    assert not torch.allclose(a, b), "the box channel must reach the network"
    free = ResNetUNet(image_size=64, backbone="resnet10", prompt_channel=False).eval()
    assert free.unet.encoder.conv1.in_channels == 3


def test_checkpoint_round_trip_and_errors(tmp_path):
    net = ResNetUNet(image_size=64, backbone="resnet10")
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    again = ResNetUNet(image_size=64, backbone="resnet10", pretrained_checkpoint=str(path))
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in net.state_dict().items())
    with pytest.raises(FileNotFoundError, match="train_baseline"):
        ResNetUNet(image_size=64, pretrained_checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="prompt_channel"):
        ResNetUNet(image_size=64, backbone="resnet10", prompt_channel=False, pretrained_checkpoint=str(path))
    with pytest.raises(ValueError, match="multiple of 32"):
        ResNetUNet(image_size=50)
    with pytest.raises(ValueError, match="backbone"):
        ResNetUNet(image_size=64, backbone="vgg16")


def test_throughput_leaves_out_first_step():
    meter = TrainThroughput("cpu")
    engine = Engine(lambda e, b: None)
    meter.attach(engine)
    engine.run([{"image": torch.zeros(3, 1, 4, 4)}] * 4, max_epochs=1)
    s = meter.summary()
    assert s["train_iterations"] == 4 and s["train_images"] == 12
    assert s["train_images_per_s"] > 0 and s["memory_kind"] == "cpu_peak_rss"
    assert peak_memory_mb("cpu")[0] > 10  # a Python process with torch holds well over 10 MiB
