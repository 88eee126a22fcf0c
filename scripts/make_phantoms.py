"""`python scripts/make_phantoms.py ...`: the tool sam2tune.tools.make_phantoms (see --help)."""
from sam2tune.tools.make_phantoms import main

if __name__ == "__main__":
    raise SystemExit(main())
