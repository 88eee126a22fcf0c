"""`python scripts/rank_ablation.py ...`: the tool sam2tune.tools.rank_ablation (see --help)."""
from sam2tune.tools.rank_ablation import main

if __name__ == "__main__":
    raise SystemExit(main())
