#!/usr/bin/env bash
# A slowdown planted in the core (a sleep in every training step) must make both regression guards fail,
# and taking it out again must make them pass:
#   1. pytest-benchmark on the core's training steps: --benchmark-compare-fail=median:15%
#   2. `harness compare` on whole grid runs: --max-slowdown 10%
#
#   bash docs/scripts/planted_slowdown.sh [SLEEP_S]        # default 0.002 s per training step
#
# It works on two copies of the working tree in a temporary folder (clean and planted), so the checkout is
# never edited. Each copy is run from its own folder: `python -m` puts the current folder first on
# sys.path, ahead of the installed (editable) harness, and the trials' child processes inherit PYTHONPATH.
# Prints one verdict line per step and exits 1 if any guard did not do what it should.
set -uo pipefail
SLEEP_S="${1:-0.002}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d /tmp/planted-slowdown.XXXXXX)"
trap 'rm -rf "$work"' EXIT

for copy in clean planted; do
  mkdir -p "$work/$copy"
  (cd "$repo" && tar -cf - --exclude=__pycache__ harness bench grids pyproject.toml) | tar -xf - -C "$work/$copy"
done
# The plant: a sleep at the top of Trainer.train_step (harness/core/train.py), the step every strategy runs.
python - "$work/planted/harness/core/train.py" "$SLEEP_S" <<'EOF'
import re, sys
path, sleep_s = sys.argv[1], sys.argv[2]
src = open(path).read()
new, n = re.subn(r"(\n    def train_step\(self[^\n]*\n)", rf"\1        __import__('time').sleep({sleep_s})  # PLANTED\n", src, count=1)
assert n == 1, "train_step not found"
open(path, "w").write(new)
EOF

cat > "$work/grid.toml" <<'EOF'
name = "planted"
repeats = 3
[model]
name = "random:bert-tiny"
max_length = 32
[data]
source = "embedded:reviews"
[train]
epochs = 2
[grid]
dataset_size = [400]
batch_size = [8]
frozen_layers = [0]
device = ["cpu"]
strategy = ["lab", "fast"]
EOF

bench=(python -m pytest bench/test_core_bench.py -k train_step -q -p no:cacheprovider
       --benchmark-storage="file://$work/benchmarks")
status=0
expect() {  # expect WANTED_EXIT LABEL COMMAND...
  local want="$1" label="$2"; shift 2
  "$@" > "$work/last.log" 2>&1
  local got=$?
  if [ "$got" = "$want" ]; then echo "ok    $label: exit $got"; else
    echo "WRONG $label: exit $got, expected $want"; tail -20 "$work/last.log"; status=1; fi
}

cd "$work/clean"
expect 0 "pytest-benchmark baseline saved (clean)" "${bench[@]}" --benchmark-enable --benchmark-autosave
cd "$work/planted"
expect 1 "pytest-benchmark, sleep ${SLEEP_S} s planted: --benchmark-compare-fail=median:15%" \
  "${bench[@]}" --benchmark-compare --benchmark-compare-fail=median:15%
grep -E "^test_train_step|Name \(time" "$work/last.log" | head -8
cd "$work/clean"
expect 0 "pytest-benchmark, plant removed: --benchmark-compare-fail=median:15%" \
  "${bench[@]}" --benchmark-compare --benchmark-compare-fail=median:15%

run() { python -m harness run "$work/grid.toml" --out "$1" --no-report; }
cd "$work/clean"
expect 0 "harness run, base (clean)" run "$work/base"
cd "$work/planted"
expect 0 "harness run, planted" run "$work/planted-run"
cd "$work/clean"
expect 1 "harness compare base planted --max-slowdown 10%" \
  python -m harness compare "$work/base" "$work/planted-run" --max-slowdown 10%
grep -E "time per epoch" "$work/last.log" | head -4
expect 0 "harness run, plant removed" run "$work/fixed-run"
expect 0 "harness compare base fixed --max-slowdown 10%" \
  python -m harness compare "$work/base" "$work/fixed-run" --max-slowdown 10%
grep -E "time per epoch" "$work/last.log" | head -4
exit $status
