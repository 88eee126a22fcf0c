"""`python scripts/click_following.py ...`: the tool sam2tune.tools.click_following (see --help)."""
from sam2tune.tools.click_following import main

if __name__ == "__main__":
    raise SystemExit(main())
