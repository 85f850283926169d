#!/usr/bin/env bash
# The planner on a GPU (docs/plan.md), for bench/gpu_check.sh: plan the CUDA grid (probes in children),
# run it, score it (`harness plan --check`: CUDA peak allocated, target median |error| <= 3 %), then the
# 16 GiB verdicts of grids/gpu_memory.toml against a real `gpu_memory = "16GiB"` run.
# Usage: bash bench/plan/gpu_plan_check.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: gpu_plan_check.sh OUT_DIR}
mkdir -p "$OUT"
export HARNESS_CACHE="$OUT/cache"
uptime | tee "$OUT/uptime.txt"
python -m harness plan bench/plan/cuda.toml --out "$OUT/plan_cuda" | tee "$OUT/plan_cuda.txt"
python -m harness run bench/plan/cuda.toml --out "$OUT/run_cuda" --no-report --plan
python -m harness plan bench/plan/cuda.toml --out "$OUT/check_cuda" --check "$OUT/run_cuda" | tee "$OUT/check_cuda.txt"
python -m harness run grids/gpu_memory.toml --out "$OUT/run_gpu_memory" --no-report --plan
python -m harness plan grids/gpu_memory.toml --out "$OUT/check_gpu_memory" --check "$OUT/run_gpu_memory" | tee "$OUT/check_gpu_memory.txt"
uptime | tee -a "$OUT/uptime.txt"
