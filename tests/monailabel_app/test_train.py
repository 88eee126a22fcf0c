"""Training datalist from submitted labels: multi-organ 3D labels keep their values, single-label ones are binarised."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from sam2tune.monailabel.train import training_datalist


class _Store:
    """The three Datastore calls training_datalist makes, over files in a folder."""

    def __init__(self, pairs: dict[str, tuple[str, str]]) -> None:
        self.pairs = pairs

    def get_labeled_images(self, tag):
        return list(self.pairs)

    def get_image_uri(self, image_id):
        return self.pairs[image_id][0]

    def get_label_uri(self, image_id, tag):
        return self.pairs[image_id][1]


def _volume_pair(tmp_path, values):
    img = tmp_path / "ct.nii.gz"
    lab = tmp_path / "ct_label.nii.gz"
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(12, 10, 6)).astype(np.float32), affine), str(img))
    label = np.zeros((12, 10, 6), np.uint8)
    for i, v in enumerate(values):
        label[2 * i : 2 * i + 2, 2:5, 1:4] = v
    nib.save(nib.Nifti1Image(label, affine), str(lab))
    return str(img), str(lab), label


def test_multi_organ_volume_keeps_label_values(tmp_path):
    img, lab, label = _volume_pair(tmp_path, [1, 6, 13])
    items = training_datalist(_Store({"ct": (img, lab)}), str(tmp_path / "out"), num_labels=13)
    copy = nib.load(items[0]["label"])
    assert items[0]["image"] == img and items[0]["id"] == "ct"
    assert np.array_equal(np.asarray(copy.dataobj), label) and set(np.unique(np.asarray(copy.dataobj))) == {0, 1, 6, 13}
    assert np.allclose(copy.affine, nib.load(img).affine)


def test_single_label_volume_and_photo_are_binarised(tmp_path):
    img, lab, _ = _volume_pair(tmp_path, [1, 6])
    photo, photo_label = tmp_path / "fundus.png", tmp_path / "fundus_label.png"
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(photo)
    mask = np.zeros((8, 9), np.uint8)
    mask[2:4, 3:6] = 2
    Image.fromarray(mask).save(photo_label)
    items = training_datalist(
        _Store({"ct": (img, lab), "fundus": (str(photo), str(photo_label))}), str(tmp_path / "out")
    )
    vol = np.asarray(nib.load(items[0]["label"]).dataobj)
    assert set(np.unique(vol)) == {0, 1}
    png = np.asarray(Image.open(items[1]["label"]))
    assert set(np.unique(png)) == {0, 255} and (png > 0).sum() == 6


def test_label_value_outside_the_model_labels_names_the_file(tmp_path):
    img, lab, _ = _volume_pair(tmp_path, [1, 14])
    with pytest.raises(ValueError, match=r"ct_label.nii.gz of image ct holds values \[14\] outside 0..13"):
        training_datalist(_Store({"ct": (img, lab)}), str(tmp_path / "out"), num_labels=13)


def test_train_task_fine_tunes_the_btcv_bundle_on_multi_organ_labels(tmp_path):
    """The app's train task on two submitted BTCV-phantom volumes: organ values reach the bundle, model.pt written."""
    import json

    import torch

    from sam2tune.data.phantoms.btcv import write_btcv_phantoms
    from sam2tune.monailabel.app import bundle_labels
    from sam2tune.monailabel.model import BundleModel
    from sam2tune.monailabel.settings import AppSettings
    from sam2tune.monailabel.train import SAM2BundleTrainTask

    data = tmp_path / "btcv"
    write_btcv_phantoms(str(data), cases=2, seed=0, size=48, depth=10, organs=[1, 6])
    store = _Store(
        {
            f"img000{i}": (str(data / "img" / f"img000{i}.nii.gz"), str(data / "label" / f"label000{i}.nii.gz"))
            for i in (1, 2)
        }
    )
    settings = AppSettings(
        model_dir=str(tmp_path / "model"), sam2_variant="tiny", image_size=64, device="cpu", max_epochs=1
    )
    model = BundleModel("abdomen_ct_sam2", settings)
    task = SAM2BundleTrainTask(model, bundle_labels(model.metadata, "abdomen_ct_sam2"))
    torch.manual_seed(0)
    stats = task({"finetune": "decoder_only", "learning_rate": 1e-3}, store)
    assert stats["images"] == 2 and stats["epochs_run"] == 1 and stats["last"]["val_mean_dice"] >= 0.0
    copies = sorted((tmp_path / "model" / "abdomen_ct_sam2" / "train_labels").iterdir())
    assert [set(np.unique(np.asarray(nib.load(str(c)).dataobj))) for c in copies] == [{0, 1, 6}] * 2
    state = torch.load(tmp_path / "model" / "abdomen_ct_sam2" / "model.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("sam.memory_attention.") for k in state)
    history = json.loads(
        (tmp_path / "model" / "abdomen_ct_sam2" / "train_output" / "training_history.json").read_text()
    )
    assert len(history) == 1
