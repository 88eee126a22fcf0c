"""Check that the installed `sam2` package is the one this project verified (a third-party upload of Meta's code).

`sam2==1.1.0` on the package index was not uploaded by Meta: its metadata names another author and home page.
Its files were compared, one by one, with facebookresearch/sam2 at commit 2b90b9f and found identical. The
manifest ``sam2tune/_sam2_manifest.json`` records, for every file of the installed ``sam2`` package, its sha256
and its git blob id at that commit (``git rev-parse 2b90b9f:<path>`` in a clone of Meta's repository gives the
same id), plus the sha256 of the pinned sdist. `verify_sam2` recomputes both hashes from the installed files.

Regenerate the manifest only after checking a new release the same way: ``python scripts/sam2_manifest.py``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from sam2tune.utils.atomic import atomic_write_json

MANIFEST_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_sam2_manifest.json")
UPSTREAM_REPO = "https://github.com/facebookresearch/sam2"
UPSTREAM_COMMIT = "2b90b9f5ceec907a1c18123530e92e794ad901a4"
_SKIP_DIRS = ("__pycache__",)
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass
class Sam2Check:
    """Result of comparing the installed sam2 package with the manifest."""

    package_dir: str
    version: str | None
    expected_version: str
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the version and every file match the manifest."""
        return self.version == self.expected_version and not (self.changed or self.missing or self.extra)

    def describe(self) -> str:
        """A message naming every difference and what to do about it."""
        lines = [f"The installed sam2 package ({self.package_dir}, version {self.version}) is not the verified one "
                 f"(sam2=={self.expected_version}, files of {UPSTREAM_REPO} at {UPSTREAM_COMMIT[:7]}):"]
        if self.version != self.expected_version:
            lines.append(f"  version {self.version} != {self.expected_version}")
        for label, names in (("changed", self.changed), ("missing", self.missing), ("extra", self.extra)):
            if names:
                lines.append(f"  {label} ({len(names)}): {', '.join(names)}")
        lines.append("Reinstall it (`rm .venv/.installed && make install`), or, after checking a new release against "
                     "Meta's repository file by file, regenerate sam2tune/_sam2_manifest.json with "
                     "`python scripts/sam2_manifest.py --upstream <clone of facebookresearch/sam2>`.")
        return "\n".join(lines)


def sha256_file(path: str) -> str:
    """Hex sha256 of a file's bytes.

    Args:
        path: file to hash.

    Returns:
        64 lower-case hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_id(data: bytes) -> str:
    """The id git gives a file's content (sha1 of ``blob <size>\\0`` + bytes), as `git hash-object` prints it.

    Args:
        data: the file's bytes.

    Returns:
        40 lower-case hex digits.
    """
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def sam2_package_dir() -> str:
    """Folder of the importable `sam2` package (found without importing it, so nothing of it runs).

    Returns:
        Absolute path of the package folder.

    Raises:
        ModuleNotFoundError: sam2 is not installed.
    """
    spec = importlib.util.find_spec("sam2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("The sam2 package is not installed: run `make install`.")
    return os.path.abspath(list(spec.submodule_search_locations)[0])


def package_files(package_dir: str) -> dict[str, str]:
    """Every file of a package folder (byte-code caches left out) -> its sha256.

    Args:
        package_dir: the package folder, e.g. the output of `sam2_package_dir()`.

    Returns:
        {"sam2/<relative path>": sha256}, paths with "/" separators, sorted.
    """
    root = os.path.dirname(package_dir)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(package_dir):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            if name.endswith(_SKIP_SUFFIXES):
                continue
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root).replace(os.sep, "/")] = sha256_file(path)
    return dict(sorted(out.items()))


def load_manifest(path: str = MANIFEST_PATH) -> dict[str, Any]:
    """Read the sam2 manifest JSON.

    Args:
        path: manifest file (default: the one shipped in sam2tune).

    Returns:
        The manifest as a dict with keys package, version, upstream, sdist, files.
    """
    with open(path) as f:
        manifest = json.load(f)
    for key in ("package", "version", "upstream", "sdist", "files"):
        if key not in manifest:
            raise ValueError(
                f"{path} lacks the key {key!r}: not a sam2 manifest (regenerate it with scripts/sam2_manifest.py)."
            )
    return manifest


def verify_sam2(manifest_path: str = MANIFEST_PATH, package_dir: str | None = None) -> Sam2Check:
    """Compare the installed sam2 files (sha256 and git blob id) and version with the manifest.

    Args:
        manifest_path: manifest to check against.
        package_dir: sam2 package folder to check (default: the installed one).

    Returns:
        A Sam2Check; `.ok` is True when everything matches, `.describe()` names each difference.
    """
    manifest = load_manifest(manifest_path)
    package_dir = package_dir or sam2_package_dir()
    try:
        version: str | None = importlib.metadata.version(manifest["package"])
    except importlib.metadata.PackageNotFoundError:
        version = None
    found = package_files(package_dir)
    expected: dict[str, dict[str, str]] = manifest["files"]
    root = os.path.dirname(package_dir)
    changed = []
    for name in sorted(found.keys() & expected.keys()):
        with open(os.path.join(root, name), "rb") as f:
            blob = git_blob_id(f.read())
        if found[name] != expected[name]["sha256"] or blob != expected[name]["git_blob"]:
            changed.append(name)
    return Sam2Check(
        package_dir=package_dir,
        version=version,
        expected_version=manifest["version"],
        changed=changed,
        missing=sorted(expected.keys() - found.keys()),
        extra=sorted(found.keys() - expected.keys()),
    )


def upstream_blob(upstream: str, name: str, commit: str = UPSTREAM_COMMIT) -> str:
    """Git blob id of `name` at `commit` in a clone of Meta's repository; a symlink there is followed to its target.

    Args:
        upstream: git directory or work tree of a facebookresearch/sam2 clone.
        name: path inside the repository, e.g. "sam2/build_sam.py".
        commit: commit to read.

    Returns:
        40 hex digits of the blob the installed file must equal.
    """

    def git(*args: str) -> str:
        return subprocess.run(["git", "--git-dir", _git_dir(upstream), *args], check=True, capture_output=True,
                              text=True).stdout

    mode, kind, blob = git("ls-tree", commit, "--", name).split()[:3]
    if kind != "blob":
        raise ValueError(f"{name} is a {kind} at {commit} in {upstream}, not a file.")
    if mode == "120000":  # symlink: git stores the target path; pip installs a copy of the target
        target = os.path.normpath(os.path.join(os.path.dirname(name), git("cat-file", "blob", blob))).replace(
            os.sep, "/"
        )
        return upstream_blob(upstream, target, commit)
    return blob


def write_manifest(
    upstream: str,
    sdist: str,
    path: str = MANIFEST_PATH,
    package_dir: str | None = None,
    commit: str = UPSTREAM_COMMIT,
) -> dict[str, Any]:
    """Hash the installed sam2 files, check each against Meta's repository at `commit`, and write the manifest.

    Args:
        upstream: git directory or work tree of a facebookresearch/sam2 clone that holds `commit`.
        sdist: the pinned sdist file (e.g. from `pip download --no-deps --no-binary :all: sam2==1.1.0`).
        path: manifest file to write (atomically).
        package_dir: sam2 package folder (default: the installed one).
        commit: upstream commit the files must equal.

    Returns:
        The manifest written.

    Raises:
        ValueError: an installed file differs from (or is absent in) the upstream commit.
    """
    package_dir = package_dir or sam2_package_dir()
    root = os.path.dirname(package_dir)
    files, differ = {}, []
    for name, digest in package_files(package_dir).items():
        with open(os.path.join(root, name), "rb") as f:
            blob = git_blob_id(f.read())
        try:
            ok = upstream_blob(upstream, name, commit) == blob
        except (subprocess.CalledProcessError, ValueError):
            ok = False
        if not ok:
            differ.append(name)
        files[name] = {"sha256": digest, "git_blob": blob}
    if differ:
        raise ValueError(f"Installed sam2 files differ from {UPSTREAM_REPO} at {commit}: {', '.join(differ)}. "
                         "Not writing a manifest for code that is not Meta's.")
    meta = importlib.metadata.metadata("sam2")
    manifest = {
        "package": "sam2",
        "version": meta["Version"],
        "index_metadata": {"author": meta.get("Author"), "home_page": meta.get("Home-page")},
        "upstream": {"repository": UPSTREAM_REPO, "commit": commit},
        "sdist": {"filename": os.path.basename(sdist), "sha256": sha256_file(sdist), "size": os.path.getsize(sdist)},
        "notes": [
            "Uploaded to the package index by a third party (index_metadata), not by Meta.",
            f"Every installed file equals its blob at {commit[:7]} (git_blob); the four sam2/sam2_hiera_*.yaml files "
            "are symlinks there and installed as copies of their targets in sam2/configs/sam2/.",
            "The sdist's setup.py differs from Meta's only in NAME, VERSION, URL, AUTHOR and AUTHOR_EMAIL; it builds "
            "no extension with SAM2_BUILD_CUDA=0 (the Makefile's setting).",
        ],
        "files": files,
    }
    atomic_write_json(manifest, path)
    return manifest


def _git_dir(upstream: str) -> str:
    dot_git = os.path.join(upstream, ".git")
    return dot_git if os.path.exists(dot_git) else upstream
