"""`python scripts/benchmark.py ...`: the tool sam2tune.tools.benchmark (see --help)."""
from sam2tune.tools.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
