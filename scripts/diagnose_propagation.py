"""`python scripts/diagnose_propagation.py ...`: the tool sam2tune.tools.diagnose_propagation (see --help)."""
from sam2tune.tools.diagnose_propagation import main

if __name__ == "__main__":
    main()
