"""`python scripts/train_baseline.py ...`: the tool sam2tune.tools.train_baseline (see --help)."""
from sam2tune.tools.train_baseline import main

if __name__ == "__main__":
    raise SystemExit(main())
