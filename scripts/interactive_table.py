"""`python scripts/interactive_table.py ...`: the tool sam2tune.tools.interactive_table (see --help)."""
from sam2tune.tools.interactive_table import main

if __name__ == "__main__":
    raise SystemExit(main())
