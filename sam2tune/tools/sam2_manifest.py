"""Write or check sam2tune/_sam2_manifest.json: sha256 + git blob of every installed sam2 file, and the sdist's sha256.

    python scripts/sam2_manifest.py --check
    python scripts/sam2_manifest.py --upstream /path/to/facebookresearch-sam2-clone --sdist sam2-1.1.0.tar.gz
    (the same: ``python -m sam2tune.tools.sam2_manifest ...``)

Writing refuses unless every installed file equals its blob at the upstream commit (see sam2tune.utils.supply_chain).
The sdist: `pip download --no-deps --no-binary :all: --no-build-isolation sam2==1.1.0 -d DIR`.
"""

from __future__ import annotations

import argparse
import json
import sys

from sam2tune.utils.supply_chain import (
    MANIFEST_PATH,
    UPSTREAM_COMMIT,
    sha256_file,
    verify_sam2,
    write_manifest,
)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 = written / verified)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="verify the installed sam2 against the manifest")
    parser.add_argument("--upstream", help="clone of facebookresearch/sam2 holding the commit (for writing)")
    parser.add_argument("--sdist", help="the pinned sam2 sdist (for writing, or with --check to verify its sha256)")
    parser.add_argument("--commit", default=UPSTREAM_COMMIT, help="upstream commit the files must equal")
    parser.add_argument("--manifest", default=MANIFEST_PATH, help="manifest path")
    args = parser.parse_args(argv)
    if args.check:
        result = verify_sam2(args.manifest)
        if not result.ok:
            print(result.describe(), file=sys.stderr)
            return 1
        if args.sdist:
            with open(args.manifest) as f:
                expected = json.load(f)["sdist"]["sha256"]
            if sha256_file(args.sdist) != expected:
                print(f"{args.sdist}: sha256 {sha256_file(args.sdist)} != recorded {expected}", file=sys.stderr)
                return 1
        print(f"sam2 {result.version} at {result.package_dir} matches {args.manifest}")
        return 0
    if not (args.upstream and args.sdist):
        parser.error("writing the manifest needs --upstream and --sdist (or use --check)")
    manifest = write_manifest(args.upstream, args.sdist, args.manifest, commit=args.commit)
    print(f"Wrote {args.manifest}: {len(manifest['files'])} files, sdist sha256 {manifest['sdist']['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
