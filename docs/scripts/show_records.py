"""One line per record of a run folder: the settings that vary in the docs' grids, the status, and the meters.

    python docs/scripts/show_records.py RUN_DIR

Largest-batch records (`kind = "max_batch"`) also list their probes.
"""

from __future__ import annotations

import sys

from harness.store import RunStore


def mib(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def main() -> None:
    for r in RunStore(sys.argv[1]).records():
        p, m = r["params"], r.get("memory") or {}
        head = (f"{r.get('kind', 'train')}: batch {p.get('batch_size')} frozen {p.get('frozen_layers')} "
                f"{p.get('strategy')} {p.get('device')}: {r['status']}")
        if r.get("oom"):
            head += f" (oom in {r['oom']['phase']}, epoch {r['oom']['epoch']})"
        print(f"{head}; {r.get('seconds_total') or 0:.1f} s; peak RSS {mib(m.get('cpu_peak_rss_mib'))} MiB "
              f"(baseline {mib(m.get('cpu_baseline_rss_mib'))}); cuda allocated/reserved "
              f"{mib(m.get('cuda_peak_allocated_mib'))}/{mib(m.get('cuda_peak_reserved_mib'))} MiB; "
              f"NVML used {mib(m.get('gpu_peak_used_mib'))} of {mib(m.get('gpu_total_mib'))} MiB; "
              f"energy {r.get('energy_j')}; cost {r.get('cost_usd')} USD; mfu {r.get('mfu')}")
        if r.get("kind") == "max_batch":
            print(f"  largest batch {r['max_batch']}, smallest oom {r['smallest_oom_batch']}, limit "
                  f"{r['batch_limit']} ({r.get('limited_by')}); error {r['error']}")
            for q in r["probes"]:
                peak = q.get("gpu_peak_used_mib") or q.get("cpu_peak_rss_mib")
                print(f"    batch {q['batch_size']}: {q['status']} ({q['source']}), peak {mib(peak)} MiB, "
                      f"{q.get('seconds_total') or 0:.1f} s")


if __name__ == "__main__":
    main()
