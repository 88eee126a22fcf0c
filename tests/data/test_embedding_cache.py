"""EmbeddingCache: decoder training on cached embeddings equals the plain path; keys, disk, invalidation, refusals."""

import logging
from pathlib import Path

import pytest
import torch
from monai.data.meta_tensor import MetaTensor
from monai.losses import DiceCELoss
from monai.transforms import RandFlipd, RandGaussianNoised, Resized

from sam2tune.data.embedding_cache import (
    EmbeddingCache,
    batch_ids,
    cache_safe,
    check_commutes,
    describe_transforms,
    encoder_fingerprint,
)
from sam2tune.engines import PromptPrepareBatch
from sam2tune.finetune import apply_finetune
from sam2tune.networks import SAM2Segmenter
from sam2tune.transforms import RandDropBoxd, SimulatePromptsd

IMAGE = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
BOXES = torch.tensor([[4.0, 6.0, 40.0, 50.0], [10.0, 10.0, 60.0, 30.0]])
LABEL = (torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1)) > 0.5).float()
IDS = ["a.jpg", "b.jpg"]


@pytest.fixture(scope="module")
def net() -> SAM2Segmenter:
    torch.manual_seed(0)
    return apply_finetune(SAM2Segmenter("tiny", 64, num_prompt_tokens=0), "decoder_only").train()


def _loss_and_grads(network, features=None):
    network.zero_grad(set_to_none=True)
    loss = DiceCELoss(sigmoid=True)(network(IMAGE, boxes=BOXES, features=features), LABEL)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in network.named_parameters() if p.grad is not None}


def test_cached_path_matches_plain_loss_and_gradients_and_hits(net):
    plain_loss, plain_grads = _loss_and_grads(net)
    cache = EmbeddingCache(net)
    cached_loss, cached_grads = _loss_and_grads(net, cache.features(IMAGE, IDS))
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 2)
    assert net.training, "the cache must restore the trainer's mode after encoding in eval mode"
    assert torch.allclose(plain_loss, cached_loss, atol=1e-6)
    assert plain_grads.keys() == cached_grads.keys() and any("mask_decoder" in n for n in plain_grads)
    for name, grad in plain_grads.items():
        assert torch.allclose(grad, cached_grads[name], rtol=1e-4, atol=1e-6), name
    # Second epoch: same ids -> no encoder call, even when the pixels differ (the id is the key).
    again = cache.features(torch.zeros_like(IMAGE), IDS[::-1])
    assert (cache.hits, cache.misses) == (2, 2)
    first = cache.features(IMAGE, IDS)
    assert torch.equal(again["image_embed"][0], first["image_embed"][1])
    assert [f.shape[-1] for f in first["raw_high_res_feats"]] == [16, 8]  # before the decoder's trainable convs


def test_disk_cache_reloads_and_invalidates_on_encoder_change(net, tmp_path):
    cache = EmbeddingCache(net, tmp_path, preprocessing="resize64")
    ref = cache.features(IMAGE, IDS)
    files = list(tmp_path.glob("*/*.pt"))
    assert len(files) == 2 and (files[0].parent / "cache_info.json").is_file()
    reloaded = EmbeddingCache(net, tmp_path, preprocessing="resize64")
    out = reloaded.features(IMAGE, IDS)
    assert reloaded.misses == 0 and torch.equal(out["image_embed"], ref["image_embed"])
    # Another preprocessing description is another key: nothing found.
    other = EmbeddingCache(net, tmp_path, preprocessing="resize96")
    other.features(IMAGE, IDS)
    assert other.misses == 2
    weight = net.sam.image_encoder.neck.convs[0].conv.weight
    original = weight.detach().clone()
    with torch.no_grad():
        weight.add_(0.01)
    try:
        assert reloaded.refresh() is True and len(reloaded) == 0
        new = reloaded.features(IMAGE, IDS)
        assert reloaded.misses == 2 and not torch.allclose(new["image_embed"], ref["image_embed"])
    finally:
        with torch.no_grad():
            weight.copy_(original)
    assert reloaded.refresh() is True  # back to the old weights: the old key again
    assert encoder_fingerprint(net, "resize64") == cache.fingerprint


def test_fingerprint_changes_with_image_size():
    torch.manual_seed(0)
    a = SAM2Segmenter("tiny", 64, num_prompt_tokens=0)
    b = SAM2Segmenter("tiny", 96, num_prompt_tokens=0)
    b.load_state_dict(a.state_dict())
    assert encoder_fingerprint(a) != encoder_fingerprint(b)


def test_trainable_encoder_is_refused(net):
    torch.manual_seed(0)
    full = apply_finetune(SAM2Segmenter("tiny", 64, num_prompt_tokens=0), "full").train()
    with pytest.raises(ValueError, match="frozen image encoder.*decoder_only"):
        EmbeddingCache(full).features(IMAGE, IDS)
    with torch.no_grad():  # evaluation never updates the encoder: allowed
        assert EmbeddingCache(full.eval()).features(IMAGE, IDS)["image_embed"].shape == (2, 256, 4, 4)


def test_non_commuting_augmentation_is_refused_or_dropped(caplog):
    prompts = [SimulatePromptsd(keys="label", mode="box"), RandDropBoxd(keys="box", prob=0.5)]
    check_commutes(prompts + [Resized(keys="image", spatial_size=(64, 64))])  # deterministic or prompt-side: fine
    flip, noise = RandFlipd(keys=["image", "label"], prob=0.5), RandGaussianNoised(keys="image", prob=0.2)
    with pytest.raises(ValueError, match=r"RandFlipd.*RandGaussianNoised.*train#augmentation"):
        check_commutes([flip, noise, *prompts])
    with caplog.at_level(logging.WARNING, logger="sam2tune.data.embedding_cache"):
        kept = cache_safe([flip, noise, *prompts], "true")
    assert kept == prompts and "RandFlipd" in caplog.text
    assert cache_safe([flip], "false") == [flip] and cache_safe([flip], "False") == [flip]
    with pytest.raises(ValueError, match="cache_embeddings must be true or false"):
        cache_safe([flip], "maybe")
    assert describe_transforms([Resized(keys="image", spatial_size=(64, 64))]) != describe_transforms(
        [Resized(keys="image", spatial_size=(96, 96))]
    )


def test_prepare_batch_passes_cached_features(net):
    image = MetaTensor(IMAGE.clone(), meta={"filename_or_obj": IDS})
    batch = {"image": image, "label": LABEL, "box": BOXES}
    assert batch_ids(batch) == ["a.jpg|3x64x64", "b.jpg|3x64x64"]
    assert batch_ids({"image": IMAGE}) != batch_ids({"image": IMAGE.flip(0)})  # no file names: pixel hashes
    cache = EmbeddingCache(net)
    _, _, _, kwargs = PromptPrepareBatch(["boxes"], embedding_cache=cache)(batch)
    assert set(kwargs) == {"boxes", "features"} and kwargs["features"]["image_embed"].shape == (2, 256, 4, 4)
    assert set(PromptPrepareBatch(["boxes"])(batch)[3]) == {"boxes"}


def test_reference_bundle_trains_on_cached_embeddings(tmp_path):
    """`--finetune decoder_only --cache_embeddings true` on the reference bundle: augmentation dropped, cache filled."""
    from sam2tune.bundles import open_workflow
    from sam2tune.data.phantoms.refuge import write_refuge_phantoms

    write_refuge_phantoms(str(tmp_path / "refuge"), cases=6, seed=0, size=64)
    bundle = Path(__file__).resolve().parents[2] / "bundles" / "optic_cup_fundus_sam2"
    with open_workflow(
        bundle, ["train"], dataset_dir=str(tmp_path / "refuge"), output_dir=str(tmp_path / "out"),
        ckpt_dir=str(tmp_path / "out" / "models"), sam2_variant="tiny", image_size=64, num_workers=0, amp=False,
        batch_size=2, max_epochs=1, finetune="decoder_only", cache_embeddings="true",
        embedding_cache_dir=str(tmp_path / "cache"),
    ) as wf:
        names = [type(t).__name__ for t in wf.parser.get_parsed_content("train#preprocessing").transforms]
        assert not {"RandFlipd", "RandAffined", "RandAdjustContrastd"} & set(names) and "RandDropBoxd" in names
        wf.run()
    cache = wf.parser.get_parsed_content("embedding_cache")
    n_train = len(wf.parser.get_parsed_content("train#dataset"))
    n_val = len(wf.parser.get_parsed_content("validate#dataset"))
    assert len(cache) == n_train + n_val and cache.misses == n_train + n_val  # each image encoded once
    assert len(list((tmp_path / "cache").glob("*/*.pt"))) == n_train + n_val
    assert (tmp_path / "out" / "models" / "model.pt").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast equality of the cached path needs CUDA")
def test_cached_path_matches_plain_under_bf16_on_cuda():
    torch.manual_seed(0)
    net = apply_finetune(SAM2Segmenter("tiny", 64, num_prompt_tokens=0), "decoder_only").cuda().train()
    image, boxes, label = IMAGE.cuda(), BOXES.cuda(), LABEL.cuda()

    def run(features=None):
        net.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = net(image, boxes=boxes, features=features)
        loss = DiceCELoss(sigmoid=True)(logits.float(), label)
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])

    plain_loss, plain_grad = run()
    cached_loss, cached_grad = run(EmbeddingCache(net, amp=True).features(image, IDS))
    assert torch.allclose(plain_loss, cached_loss, rtol=2e-2, atol=1e-3)
    assert torch.nn.functional.cosine_similarity(plain_grad, cached_grad, dim=0) > 0.99
