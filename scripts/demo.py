"""`python scripts/demo.py ...`: the tool sam2tune.tools.demo (see --help)."""
from sam2tune.tools.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
