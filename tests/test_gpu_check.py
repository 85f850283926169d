"""bench/gpu_check.sh --dry-run: the GPU check's every step, on CPU at tiny shapes, so that the one command
meant for a short, rare GPU slot is known to work before it meets a GPU. Marked slow: `.ci/run` runs it in
its second pass (`pytest -m slow`), and `python -m pytest -m slow tests/test_gpu_check.py` runs it alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # 2-4 min on 2 cores: in CI's slow suite (.ci/run), out of the README's default run
@pytest.mark.timeout(900)
def test_gpu_check_dry_run_runs_every_step(tmp_path):
    before = (REPO / "docs" / "gpu.md").read_bytes() if (REPO / "docs" / "gpu.md").exists() else None
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OUT", None)
    # A session of its own, so that a timeout ends the check's runs too, not only the script.
    proc = subprocess.Popen(["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=850)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"the dry run took over 850 s: {out[-2000:]}")
    assert proc.returncode == 0, out[-3000:] + err[-3000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = summary["steps"]
    assert list(steps) == ["env", "cuda_tests", "lab_vs_fast", "budget_16gib", "plan", "families", "lora"]
    assert all(s["status"] in ("ok", "skipped") for s in steps.values()), steps
    assert steps["cuda_tests"]["status"] == "ok" and "skipped" in steps["cuda_tests"]["result"]["summary"]
    lab = steps["lab_vs_fast"]["result"]
    assert {(str(t["frozen"]), t["strategy"]) for t in lab["trials"]} == {("all", "lab"), ("all", "fast"),
                                                                          ("0", "lab"), ("0", "fast")}
    assert all(t["status"] == "ok" and t["epochs"] == 2 and t["train_s"] for t in lab["trials"])
    assert lab["fast_speedup"]["all"]["train"] and lab["fast_speedup"]["0"]["total"]
    budget = steps["budget_16gib"]["result"]
    assert {(t["frozen"], t["batch"]) for t in budget["trials"]} == {(f, b) for f in (0, "all") for b in (4, 8)}
    assert {b["frozen"] for b in budget["largest_batch"]} == {0, "all"}
    assert all(b["max_batch"] for b in budget["largest_batch"])
    families = steps["families"]["result"]
    assert {(t["model"], str(t["frozen"])) for t in families["trials"]} == {
        (m, f) for m in ("random:modernbert-tiny", "random:qwen2-tiny") for f in ("all", "1")}
    assert all(t["status"] == "ok" for t in families["trials"])
    # the plan predicts every trial of the tiny budget grid (its probes fit a 40-row source) and scores itself
    plan_out = steps["plan"]["result"]["output"]
    assert "cannot predict" not in plan_out and "predicted vs measured" in plan_out.lower(), plan_out[-2000:]
    lora = steps["lora"]["result"]
    assert {(str(t["frozen"]), t["adapter"]) for t in lora["trials"]} == {
        (f, a) for f in ("all", "1", "0") for a in ("none", "lora")} - {("all", "lora")}
    assert all(t["status"] == "ok" for t in lora["trials"])
    by = {(str(t["frozen"]), t["adapter"]): t["trainable_params"] for t in lora["trials"]}
    assert by[("all", "none")] < by[("1", "lora")] < by[("1", "none")] < by[("0", "none")]
    doc = (tmp_path / "gpu.md").read_text()
    assert "DRY RUN" in doc and "bash bench/gpu_check.sh --dry-run" in doc and "Largest batch" in doc
    assert "LoRA" in doc
    after = (REPO / "docs" / "gpu.md").read_bytes() if (REPO / "docs" / "gpu.md").exists() else None
    assert after == before  # a dry run never writes the GPU figures
