#!/usr/bin/env bash
# Checks that need a GPU, as one short script (a few minutes on one CUDA device):
#  1. the CUDA tests of the default suite (they skip on a machine without CUDA): the cache on the device and
#     in pinned host memory, mixed precision, and a decoder and a modern encoder in bf16 (test_families.py);
#  2. grids/families_gpu.toml: base shapes of a modern encoder and a decoder on CUDA in bf16, end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
python -m pytest -q tests/test_families.py tests/test_cache.py -k "cuda"
out="${OUT:-results}/families_gpu"
python -m harness run grids/families_gpu.toml --out "$out" --no-report
python - "$out" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(f"{sys.argv[1]}/trials.jsonl")]
for r in recs:
    print(r["params"]["model"], r["params"]["frozen_layers"], r["status"], r.get("error"),
          (r.get("strategy_detail") or {}).get("precision"), r["memory"].get("cuda_peak_allocated_mib"))
assert all(r["status"] == "ok" for r in recs), "a trial failed"
PY
