#!/usr/bin/env bash
# docs/scripts/cpu_budget.toml once per `[limits] cpu_memory_method` (auto, cgroup, watchdog, rlimit), each
# into /tmp/cpu_budget_<method>, then one line per trial: status, peak RSS, how the budget was enforced,
# and the error. CPU_MEMORY replaces the grid's budget (and names the output folders /tmp/cpu_budget_<method>_<size>).
#   bash docs/scripts/cpu_budget_methods.sh [METHOD ...]       # default: all four
#   CPU_MEMORY=4GiB bash docs/scripts/cpu_budget_methods.sh rlimit
set -uo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
methods=("$@")
[ ${#methods[@]} -eq 0 ] && methods=(auto cgroup watchdog rlimit)
size="${CPU_MEMORY:-}"
for m in "${methods[@]}"; do
  run="cpu_budget_$m${size:+_$size}"
  grid="/tmp/$run.toml"
  sed "s/^cpu_memory_method = .*/cpu_memory_method = \"$m\"/; 0,/^name = .*/s//name = \"$run\"/" \
    "$repo/docs/scripts/cpu_budget.toml" > "$grid"
  [ -n "$size" ] && sed -i "s/^cpu_memory = .*/cpu_memory = \"$size\"/" "$grid"
  rm -rf "/tmp/$run"
  (cd "$repo" && python -m harness run "$grid" --out "/tmp/$run" --no-report > "/tmp/$run.log" 2>&1)
  echo "== $m${size:+ at $size} (exit $?)"
  python - "/tmp/$run/trials.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    m = r["memory"]
    print(f"batch {r['params']['batch_size']}: {r['status']}; oom {r['oom']}; peak RSS {m['cpu_peak_rss_mib']} MiB "
          f"(baseline {m['cpu_baseline_rss_mib']}, ru_maxrss {m['cpu_maxrss_mib']}); "
          f"{r['seconds_total']:.1f} s; enforced by: {r['memory_budget'].get('cpu_enforced_by')}; error: {r['error']}")
EOF
done
