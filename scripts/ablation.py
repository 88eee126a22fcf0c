"""`python scripts/ablation.py ...`: the tool sam2tune.tools.ablation (see --help)."""
from sam2tune.tools.ablation import main

if __name__ == "__main__":
    raise SystemExit(main())
