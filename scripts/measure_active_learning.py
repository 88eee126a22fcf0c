"""`python scripts/measure_active_learning.py ...`: the tool sam2tune.tools.measure_active_learning (see --help)."""
from sam2tune.tools.measure_active_learning import main

if __name__ == "__main__":
    raise SystemExit(main())
