"""The installed sam2 (a third-party upload of Meta's code) is byte for byte the one recorded in the manifest."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from sam2tune.utils.supply_chain import (
    UPSTREAM_COMMIT,
    git_blob_id,
    load_manifest,
    package_files,
    sam2_package_dir,
    verify_sam2,
    write_manifest,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_installed_sam2_matches_the_manifest():
    result = verify_sam2()
    assert result.ok, result.describe()
    assert len(load_manifest()["files"]) == len(package_files(sam2_package_dir()))


def test_a_changed_missing_or_extra_file_is_named(tmp_path):
    copy = tmp_path / "site" / "sam2"
    shutil.copytree(sam2_package_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "build_sam.py", "a") as f:
        f.write("\nimport os  # one added line\n")
    os.remove(copy / "modeling" / "sam" / "mask_decoder.py")
    (copy / "utils" / "injected.py").write_text("print('hello')\n")
    os.makedirs(copy / "__pycache__", exist_ok=True)
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")  # byte-code caches are not package files
    result = verify_sam2(package_dir=str(copy))
    assert not result.ok
    assert result.changed == ["sam2/build_sam.py"]
    assert result.missing == ["sam2/modeling/sam/mask_decoder.py"]
    assert result.extra == ["sam2/utils/injected.py"]
    text = result.describe()
    for name in ("changed (1): sam2/build_sam.py", "missing (1): sam2/modeling/sam/mask_decoder.py",
                 "extra (1): sam2/utils/injected.py", "scripts/sam2_manifest.py"):
        assert name in text


def test_manifest_records_the_pin_the_sdist_and_the_upstream_commit():
    manifest = load_manifest()
    with open(os.path.join(REPO, "requirements.txt")) as f:
        pin = re.search(r"^sam2==(\S+)", f.read(), re.M).group(1)
    assert manifest["version"] == pin
    assert manifest["sdist"]["filename"] == f"sam2-{pin}.tar.gz"
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["sdist"]["sha256"])
    assert manifest["upstream"] == {"repository": "https://github.com/facebookresearch/sam2", "commit": UPSTREAM_COMMIT}
    assert all(re.fullmatch(r"[0-9a-f]{64}", v["sha256"]) and re.fullmatch(r"[0-9a-f]{40}", v["git_blob"])
               for v in manifest["files"].values())
    # the README says where sam2 comes from and records the same values
    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    assert "Where sam2 comes from" in readme
    assert manifest["sdist"]["sha256"] in readme and UPSTREAM_COMMIT[:7] in readme
    # the Makefile installs sam2 in pip's hash-checking mode from requirements-sam2.txt, with the same pin and hash
    with open(os.path.join(REPO, "requirements-sam2.txt")) as f:
        line = next(ln for ln in f if ln.startswith("sam2=="))
    assert line.split()[0] == f"sam2=={pin}" and f"--hash=sha256:{manifest['sdist']['sha256']}" in line
    with open(os.path.join(REPO, "Makefile")) as f:
        assert "-r requirements-sam2.txt" in f.read()


def test_git_blob_ids_are_gits():
    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_command_line_check(tmp_path):
    script = os.path.join(REPO, "scripts", "sam2_manifest.py")
    ok = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    wrong = tmp_path / "sam2-1.1.0.tar.gz"
    wrong.write_bytes(b"not the sdist")
    bad = subprocess.run([sys.executable, script, "--check", "--sdist", str(wrong)], capture_output=True, text=True)
    assert bad.returncode == 1 and "!= recorded" in bad.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")
def test_write_manifest_refuses_files_that_are_not_upstreams(tmp_path):
    upstream = tmp_path / "upstream"
    (upstream / "sam2").mkdir(parents=True)
    (upstream / "sam2" / "a.py").write_text("x = 1\n")
    os.symlink("a.py", upstream / "sam2" / "link.py")  # pip installs a symlink as a copy of its target
    git = ["git", "-C", str(upstream), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    installed = tmp_path / "site" / "sam2"
    installed.mkdir(parents=True)
    (installed / "a.py").write_text("x = 1\n")
    (installed / "link.py").write_text("x = 1\n")
    sdist = tmp_path / "sam2.tar.gz"
    sdist.write_bytes(b"sdist")
    out = str(tmp_path / "manifest.json")
    manifest = write_manifest(str(upstream), str(sdist), out, package_dir=str(installed), commit=commit)
    assert set(manifest["files"]) == {"sam2/a.py", "sam2/link.py"}
    assert verify_sam2(out, package_dir=str(installed)).changed == []
    with open(out) as f:
        assert json.load(f)["sdist"] == {
            "filename": "sam2.tar.gz",
            "sha256": hashlib.sha256(b"sdist").hexdigest(),
            "size": 5,
        }
    (installed / "a.py").write_text("x = 2\n")
    with pytest.raises(ValueError, match=r"differ from .* sam2/a\.py.*Not writing"):
        write_manifest(str(upstream), str(sdist), out, package_dir=str(installed), commit=commit)
