"""`python scripts/seed_study.py ...`: the tool sam2tune.tools.seed_study (see --help)."""
from sam2tune.tools.seed_study import main

if __name__ == "__main__":
    raise SystemExit(main())
