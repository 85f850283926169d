#!/usr/bin/env bash
# Run the planner benchmark's held-out grids for real (docs/plan.md). Each run's folder goes under
# bench/plan/runs/ (ignored by git); `uptime` before and after each is logged, for the machine's load.
# Usage: bash bench/plan/run_heldout.sh [grid ...]   (default: the three grids below)
set -u
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
OUT=bench/plan/runs
mkdir -p "$OUT"
grids=("$@")
[ ${#grids[@]} -eq 0 ] && grids=(bench/plan/heldout_minilm.toml bench/plan/heldout_distilbert.toml)
for g in "${grids[@]}"; do
  name=$(basename "$g" .toml)
  echo "== $name start $(date -u +%FT%TZ) uptime: $(uptime)" >> "$OUT/uptime.log"
  python -m harness run "$g" --out "$OUT/$name" --no-report > "$OUT/$name.log" 2>&1
  echo "== $name end $(date -u +%FT%TZ) rc=$? uptime: $(uptime)" >> "$OUT/uptime.log"
done
