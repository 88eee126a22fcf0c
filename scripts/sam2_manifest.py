"""`python scripts/sam2_manifest.py ...`: the tool sam2tune.tools.sam2_manifest (see --help)."""
from sam2tune.tools.sam2_manifest import main

if __name__ == "__main__":
    raise SystemExit(main())
