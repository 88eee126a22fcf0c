"""`python scripts/measure_latency.py ...`: the tool sam2tune.tools.measure_latency (see --help)."""
from sam2tune.tools.measure_latency import main

if __name__ == "__main__":
    raise SystemExit(main())
