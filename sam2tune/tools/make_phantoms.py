"""Write a phantom dataset in a task's real public layout, with truth known by construction.

python scripts/make_phantoms.py <refuge|btcv|lung_nodule|knee|severstal> --out DIR [--cases N] [--seed S]
                                [--size N | --size HxW]
(the same: ``sam2tune-phantoms ...`` or ``python -m sam2tune.tools.make_phantoms ...``)
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from sam2tune.data.phantoms import PHANTOM_WRITERS, get_phantom_writer


def _size(text: str) -> int | tuple[int, int]:
    """'256' -> 256; '192x256' -> (192, 256) as (height, width)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise argparse.ArgumentTypeError(f"--size must be N or HxW (e.g. 256 or 192x256), got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=list(PHANTOM_WRITERS), help="which dataset layout to write")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--cases", type=int, default=None, help="number of cases (default: the writer's own)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    parser.add_argument("--size", type=_size, default=None, help="image size N or HxW, for writers that take one")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the phantoms, print a summary; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        writer = get_phantom_writer(args.task)
    except NotImplementedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    kwargs: dict = {"seed": args.seed}
    if args.cases is not None:
        if args.cases < 1:
            parser.error(f"--cases must be >= 1, got {args.cases}")
        kwargs["cases"] = args.cases
    if args.size is not None:
        params = inspect.signature(writer).parameters
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if "size" not in params and not takes_kwargs:
            parser.error(f"the {args.task} phantom writer takes no --size")
        kwargs["size"] = args.size
    try:
        summary = writer(args.out, **kwargs)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"Wrote {args.task} phantoms to {Path(args.out).resolve()}:")
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
