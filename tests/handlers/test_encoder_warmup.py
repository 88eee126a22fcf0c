"""Encoder warm-up: frozen for the warm-up epochs, then trained in its own lower-LR optimizer group."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from torch import nn

from sam2tune.finetune import param_groups
from sam2tune.handlers.encoder_warmup import EncoderWarmup


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.sam = nn.Module()
        self.sam.image_encoder = nn.Linear(2, 2)
        self.sam.sam_mask_decoder = nn.Linear(2, 1)

    def forward(self, x):
        return self.sam.sam_mask_decoder(self.sam.image_encoder(x))


def test_frozen_then_unfrozen_with_encoder_lr_tenth():
    net = _Tiny()
    opt = torch.optim.AdamW(param_groups(net, 1e-2, 0.1), lr=1e-2)
    assert [(g["name"], g["lr"]) for g in opt.param_groups] == [("image_encoder", pytest.approx(1e-3)),
                                                                ("decoder", 1e-2)]
    warm = EncoderWarmup(net, warmup_epochs=2)
    enc0 = net.sam.image_encoder.weight.detach().clone()
    seen = []

    def step(engine, _):
        opt.zero_grad()
        net(torch.ones(4, 2)).sum().backward()
        opt.step()
        seen.append((engine.state.epoch, warm(engine), net.sam.image_encoder.weight.requires_grad))

    engine = Engine(step)
    warm.attach(engine)
    engine.run([0], max_epochs=2)
    assert torch.equal(net.sam.image_encoder.weight, enc0)  # no update (and no weight decay) while frozen
    engine.run([0], max_epochs=3)
    assert seen == [(1, False, False), (2, False, False), (3, True, True)] and warm.unfreeze_epoch == 3
    assert not torch.equal(net.sam.image_encoder.weight, enc0)


def test_bad_warmup():
    with pytest.raises(ValueError, match="warmup_epochs"):
        EncoderWarmup(_Tiny(), warmup_epochs=-1)
