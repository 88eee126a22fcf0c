"""sam2tune.bundles.run_workflow / open_workflow: the one in-process build -> initialize -> run -> finalize sequence."""

from __future__ import annotations

import json

import pytest

from sam2tune.bundles import BundleRootError, bundle_config_files, open_workflow, run_workflow

BUNDLE = "optic_cup_fundus_sam2"


@pytest.fixture()
def source(bundle_tools):
    return bundle_tools.REPO / "bundles" / BUNDLE


def test_missing_config_names_the_file_and_the_bundles_configs(source):
    with pytest.raises(FileNotFoundError) as err:
        run_workflow(source, ["train", "evaluat"], run=False)
    message = str(err.value)
    assert str(source / "configs" / "evaluat.json") in message
    assert "evaluate, evaluate_interactive, inference, metadata, multi_gpu_train, train" in message
    with pytest.raises(ValueError, match="list of config names"):
        bundle_config_files(source, "train")  # a bare string would be read as a list of letters


def test_bundle_by_name_or_folder(source, tmp_path, monkeypatch):
    """A name goes through bundle_root (./bundles/<name> here), a folder is taken as given; both give one workflow."""
    monkeypatch.delenv("SAM2TUNE_BUNDLES", raising=False)
    monkeypatch.chdir(source.parents[1])
    by_name = run_workflow(BUNDLE, ["train", "evaluate"], run=False, image_size=48)
    by_folder = run_workflow(source, ["train", "evaluate"], run=False, image_size=48)
    for wf in (by_name, by_folder):
        assert wf.parser.get_parsed_content("bundle_root") == str(source.resolve())
        assert wf.parser.get_parsed_content("image_size") == 48  # the override reached the parser
        assert wf.parser.get("_meta_", {}).get("name")  # the bundle's metadata.json was read
    monkeypatch.chdir(tmp_path)  # no ./bundles here: the name cannot be resolved
    with pytest.raises(BundleRootError, match=BUNDLE):
        run_workflow(BUNDLE, ["train"], run=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_workflow(tmp_path / "nowhere", ["train"], run=False)


def test_open_workflow_finalizes_when_the_block_ends_only(source, tmp_path):
    """The config's `finalize` expressions run after a block that ends normally, not after one that raises."""
    done, failed = tmp_path / "finalized", tmp_path / "finalized_after_error"
    with open_workflow(source, ["train"], finalize=[f"$open({str(done)!r}, 'w').close()"]) as wf:
        assert wf.parser.get_parsed_content("image_size") > 0 and not done.exists()
    assert done.exists()
    with pytest.raises(KeyError), open_workflow(source, ["train"], finalize=[f"$open({str(failed)!r}, 'w').close()"]):
        raise KeyError("a failed run")
    assert not failed.exists()


def test_run_workflow_trains_one_epoch(source, tmp_path, bundle_tools):
    """run=True: the bundle's run expression trains (1 epoch, 64 px, 4 phantoms) and the workflow holds its trainer."""
    from sam2tune.data.phantoms.refuge import write_refuge_phantoms

    write_refuge_phantoms(str(tmp_path / "refuge"), cases=4, seed=0, size=64)
    out = tmp_path / "run"
    wf = run_workflow(source, ["train"], dataset_dir=str(tmp_path / "refuge"), output_dir=str(out),
                      ckpt_dir=str(out / "models"), max_epochs=1, finetune="decoder_only", **bundle_tools.TINY)
    assert wf.parser.get_parsed_content("train#trainer").state.epoch == 1
    assert [r["epoch"] for r in json.loads((out / "training_history.json").read_text())] == [1]
    assert (out / "models" / "model.pt").is_file()
