#!/usr/bin/env bash
# Run Project-MONAI/model-zoo's own CI script (ci/verify_bundle.py, full mode) on every sam2tune bundle, offline.
#
#   scripts/zoo_ci.sh ZOO [BUNDLE ...]
#
# ZOO: a clone of https://github.com/Project-MONAI/model-zoo (a checkout or a bare clone; it is not modified: the
# bundles are laid out in a fresh copy of it under $WORK, default a temporary folder). Each bundle is put at
# models/<bundle> as shipped (configs, docs, LICENSE, large_files.yml); eval/schema.json is configs/meta_schema.json
# (what the zoo's prepare_schema writes there); the files large_files.yml names are stood in locally (an existing
# file makes download_url skip the download); models/model.pt comes from the zoo's own _produce_fake_weights.
# Prints the script's "verified" lines per bundle and exits non-zero when any bundle fails.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
ZOO=${1:?usage: scripts/zoo_ci.sh ZOO_CLONE [BUNDLE ...]}
shift
BUNDLES=("$@")
[[ ${#BUNDLES[@]} -gt 0 ]] || BUNDLES=(abdomen_ct_sam2 knee_cartilage_mri_sam2 lung_nodule_ct_sam2 optic_cup_fundus_sam2
                                       steel_defect_sam2)
WORK=${WORK:-$(mktemp -d)}
rm -rf "$WORK/zoo"
git clone -q "$ZOO" "$WORK/zoo"
cd "$WORK/zoo"
echo "model-zoo commit: $(git rev-parse --short=8 HEAD)   sam2tune commit: $(git -C "$REPO" rev-parse --short=8 HEAD)"
failed=0
for b in "${BUNDLES[@]}"; do
  rm -rf "models/$b"
  mkdir -p "models/$b/eval" "models/$b/models"
  cp -r "$REPO/bundles/$b/"{configs,docs,LICENSE,large_files.yml} "models/$b/"
  cp "$REPO/configs/meta_schema.json" "models/$b/eval/schema.json"
  grep -E '^\s+- path:' "models/$b/large_files.yml" | sed -E 's/.*path: "?([^"]+)"?.*/\1/' | while read -r p; do
    [[ -e "models/$b/$p" ]] || echo "stand-in" > "models/$b/$p"
  done
  (cd "models/$b/models" && "$PY" -c "
import sys; sys.path.insert(0, '../../../ci')
from verify_bundle import _produce_fake_weights
_produce_fake_weights('../configs/inference.json', '../configs/metadata.json', '$b', 'cpu')") > "$WORK/fake_$b.log" 2>&1 \
    || { echo "$b: _produce_fake_weights failed (log: $WORK/fake_$b.log)"; failed=1; continue; }
  echo "\$ python ci/verify_bundle.py --b $b -m full"
  rc=0
  "$PY" ci/verify_bundle.py --b "$b" -m full > "$WORK/verify_$b.log" 2>&1 || rc=$?
  grep -E "^(start verifying|directory|version and|metadata format|properties|data shape|export weights|Provided)" \
    "$WORK/verify_$b.log" || true
  echo "exit $rc"
  [[ $rc -eq 0 ]] || { echo "$b failed: log $WORK/verify_$b.log"; tail -20 "$WORK/verify_$b.log"; failed=1; }
done
exit $failed
