"""`python scripts/compare.py ...`: the tool sam2tune.tools.compare (see --help)."""
from sam2tune.tools.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
