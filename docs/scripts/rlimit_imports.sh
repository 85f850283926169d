#!/usr/bin/env bash
# What RLIMIT_AS (the `rlimit` CPU-budget method) does to a trial's imports, before any training:
#   1. numpy (its own OpenBLAS) and a 256x256 matmul, under 64 to 600 MiB;
#   2. torch, a matmul, scikit-learn (which loads SciPy's OpenBLAS) and transformers, under 300 to 1500 MiB.
# Each run is cut at TIMEOUT_S (default 15) seconds: exit 124 means it was still running (a hang).
#   bash docs/scripts/rlimit_imports.sh
set -uo pipefail
t="${TIMEOUT_S:-15}"
run() {  # $1 MiB, $2 python code after the limit is set
  local out start end rc
  out="$(mktemp)"
  start=$(date +%s.%N)
  timeout "$t" python -c "import resource; n=$1*2**20; resource.setrlimit(resource.RLIMIT_AS, (n, resource.RLIM_INFINITY))
$2" > "$out" 2>&1
  rc=$?
  end=$(date +%s.%N)
  printf "RLIMIT_AS %5s MiB: exit %3s after %5.1f s: %s\n" "$1" "$rc" "$(echo "$end - $start" | bc)" \
    "$(grep -v '^ *$' "$out" | tail -1 | cut -c1-150)"
  rm -f "$out"
}
echo "== import numpy; 256x256 matmul"
for mib in 64 100 120 125 130 135 140 160 200 300 600; do
  run "$mib" "import numpy; a = numpy.ones((256, 256)); (a @ a).sum(); print('ok')"
done
echo "== import torch; matmul; import sklearn.model_selection, transformers"
for mib in 300 500 600 700 800 1000 1200 1500; do
  run "$mib" "import torch; torch.set_num_threads(2); a = torch.ones(256, 256); (a @ a).sum(); print('torch ok', flush=True)
import sklearn.model_selection, transformers; print('ok')"
done
