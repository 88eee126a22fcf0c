"""Which served bundle learns from a saved label (sam2tune.monailabel.app): a label saved with ``"model": <bundle>``
queues and feeds that bundle's quick updates only; a label naming no served bundle, every bundle of its kind."""

from __future__ import annotations

import types

import nibabel as nib
import numpy as np
from monailabel.datastore.local import LocalDatastore

from sam2tune.monailabel.app import final_labels, labelled_for, on_label_saved

SERVED = ("lung", "abdomen", "cup")


def _store(tmp_path) -> LocalDatastore:
    for name in ("ct1", "ct2", "ct3"):
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)), tmp_path / f"{name}.nii.gz")
    return LocalDatastore(str(tmp_path), extensions=["*.nii.gz"], auto_reload=False)


def _save(store: LocalDatastore, tmp_path, image_id: str, info: dict) -> str:
    label = tmp_path / f"upload_{image_id}.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.uint8), np.eye(4)), label)
    return store.save_label(image_id, str(label), "final", info)


class _Updater:
    def __init__(self, dimension: int) -> None:
        self.model, self.queued = types.SimpleNamespace(dimension=dimension), []

    def submit(self, image_id: str) -> int:
        self.queued.append(image_id)
        return len(self.queued)


def test_a_label_goes_to_the_bundle_it_was_made_with(tmp_path):
    store = _store(tmp_path)
    lung = _save(store, tmp_path, "ct1", {"model": "lung", "label_names": {"lung_nodule": 1}})
    auto = _save(store, tmp_path, "ct2", {"model": "abdomen_auto"})  # the automatic infer's name: its bundle
    anyone = _save(store, tmp_path, "ct3", {"model": "not_served"})
    assert [labelled_for(store, i, SERVED) for i in (lung, auto, anyone)] == ["lung", "abdomen", None]
    assert [i for i, *_ in final_labels(store, "lung", SERVED)] == ["ct1", "ct3"]
    assert [i for i, *_ in final_labels(store, "abdomen", SERVED)] == ["ct2", "ct3"]
    assert len(final_labels(store)) == 3

    updaters = {"lung": _Updater(3), "abdomen": _Updater(3), "cup": _Updater(2)}
    assert on_label_saved(updaters, store, "ct1", lung) == {"quick_update": {"lung": 1}}
    assert on_label_saved(updaters, store, "ct3", anyone) == {"quick_update": {"lung": 2, "abdomen": 1}}
    assert updaters["cup"].queued == []  # a volume does not update a 2D bundle
