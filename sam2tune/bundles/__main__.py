"""``python -m sam2tune.bundles export --bundle <name|folder> --ckpt_dir D --out dist/``: a hand-over zip of a bundle.

Also ``python -m sam2tune.bundles list``: the bundles found (see ``sam2tune.bundles.bundles_dir``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from sam2tune.bundles import list_bundles
from sam2tune.bundles.export import WEIGHTS_CHOICES, BundleExportError, export_bundle


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (subcommands ``export`` and ``list``).

    Returns:
        An argparse parser.
    """
    parser = argparse.ArgumentParser(prog="python -m sam2tune.bundles", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write <out>/<bundle>_v<version>.zip in the MONAI model-zoo layout")
    ex.add_argument("--bundle", required=True, help="bundle name (e.g. optic_cup_fundus_sam2) or bundle folder")
    ex.add_argument("--ckpt_dir", required=True, help="the run's ckpt_dir (model.pt, and adapter/ for lora|adapter)")
    ex.add_argument("--out", required=True, help="folder to write the zip to")
    ex.add_argument("--eval_summary", default=None, help="<output_dir>/eval/summary.json: fills eval_metrics")
    ex.add_argument("--version", default=None, help="version of the exported bundle (default: next patch)")
    ex.add_argument("--changelog", default=None, help="changelog entry for that version (default: generated)")
    ex.add_argument("--weights", default="auto", choices=WEIGHTS_CHOICES,
                    help="full: models/model.pt; adapter: models/adapter/ + base checkpoint in large_files.yml")
    sub.add_parser("list", help="print the bundles found")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments (default: sys.argv[1:]).

    Returns:
        The process exit status.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "list":
        print("\n".join(list_bundles()))
        return 0
    try:
        path = export_bundle(args.bundle, args.ckpt_dir, args.out, args.eval_summary, args.version, args.changelog,
                             args.weights)
    except BundleExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
