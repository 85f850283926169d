"""Meters (issue 3): memory measured right, OOM as data, budgets enforced, energy null with a reason, cost and
FLOP arithmetic, the largest-batch search. Fast and CPU-only; the CUDA checks skip without a GPU.

Three tests start real trial children (a two-point grid under a budget, and a SIGKILLed trial); the rest run
in this process. `random:bert-tiny` at 512 tokens on a CSV of long texts written here: its batch of 4 peaks at
about 0.7 GiB of resident memory and its batch of 32 at about 1.4 GiB (docs/meters.md), so a 900 MiB budget
sits well between them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from harness.config import ConfigError, parse_grid
from harness.grid import Trial, expand
from harness.meters import Meters
from harness.meters import energy as E
from harness.meters.cost import match_device, trial_cost
from harness.meters.cpu_memory import TreeRss
from harness.core.models import encoder_shape as shape_of
from harness.meters.flops import EncoderShape, Work, forward_flops, mfu, trial_flops
from harness.record import HeartbeatEvent, TrialRecord

MiB = 2**20
HAS_CUDA = False
try:
    import torch

    HAS_CUDA = torch.cuda.is_available()
except Exception:  # pragma: no cover
    pass


def long_csv(path: Path, rows: int = 36, long_rows: int = 8, words: int = 600) -> Path:
    """`long_rows` texts of over 512 tokens, the rest of 10 words: with per-batch padding and length buckets
    only the batches of long texts are 512 tokens wide (the memory peak), the others are cheap."""
    rng = random.Random(0)
    vocab = "good bad movie plot actor scene great awful boring fun story music long short film".split()
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(rows):
            n = words if i < long_rows else 10
            w.writerow([" ".join(rng.choice(vocab) for _ in range(n)), i % 2])
    return path


def grid_text(source: Path, batch_sizes: list[int], extra: str = "", epochs: int = 1) -> str:
    return f"""
name = "meters"
[model]
name = "random:bert-tiny"
max_length = 512
[data]
source = "{source}"
padding = "batch"
[train]
epochs = {epochs}
length_buckets = true
[grid]
dataset_size = [36]
batch_size = {batch_sizes}
frozen_layers = [0]
device = ["cpu"]
[limits]
trial_timeout_s = 300
{extra}
"""


# --------------------------------------------------------------------------------------------------
# CPU memory
# --------------------------------------------------------------------------------------------------
_KNOWN_ALLOCATION = """
import json, time
import numpy as np
from harness.meters.cpu_memory import CpuMemorySampler
MiB = 2**20
s = CpuMemorySampler(interval_s=0.005)
s.start()
try:
    s.mark_baseline()
    block = np.ones(200 * MiB // 8)  # 200 MiB, every page written
    time.sleep(0.05)
    s.sample()
    grown = s.peak - s.baseline
    del block
finally:
    s.stop()
print(json.dumps({"grown": grown, **s.summary()}))
"""


def test_an_allocation_of_known_size_is_measured_within_5_percent():
    # In a fresh interpreter: the sampler reads its process tree, and this pytest process may still hold
    # children of earlier tests (a preloaded trial server, probe children) whose memory moves meanwhile.
    out = subprocess.run([sys.executable, "-c", _KNOWN_ALLOCATION], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    reading = json.loads(out.stdout.strip().splitlines()[-1])
    grown = reading["grown"]
    assert abs(grown - 200 * MiB) <= 0.05 * 200 * MiB, grown / MiB
    assert reading["cpu_baseline_rss_mib"] is not None
    assert reading["cpu_peak_rss_mib"] >= reading["cpu_baseline_rss_mib"] + 190
    assert reading["cpu_maxrss_mib"] >= reading["cpu_peak_rss_mib"] * 0.95  # the kernel saw the same peak


def test_the_process_tree_counts_workers():
    tree = TreeRss(refresh_s=0.0)
    before = tree.read()
    code = "import sys, time; b = b'x' * (100 * 2**20); sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with_child = tree.read()
        # The task lists' `children` files stay open between listings: a second worker started after the
        # first listing is still seen, read again through the same descriptors.
        second = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert second.stdout.readline().strip() == "ready"
            with_two = tree.read()
            listed = list(tree._pids)
        finally:
            second.kill()
            second.wait()
    finally:
        child.kill()
        child.wait()
    assert with_child - before >= 100 * MiB
    assert with_two - with_child >= 100 * MiB and {child.pid, second.pid} <= set(listed)
    after = tree.read()
    gone = {child.pid, second.pid}
    # (the test process may have other children of its own, from earlier tests: only these two are checked)
    assert not gone & set(tree._pids) and after < with_two - 150 * MiB
    if sys.platform.startswith("linux"):  # the ended workers' descriptors are closed
        assert not gone & {pid for pid, _ in tree._child_fds} and not gone & set(tree._fds)
    tree.close()
    assert not tree._child_fds and not tree._fds


def test_heartbeats_carry_memory_and_come_at_once_when_the_peak_grows():
    beats: list[tuple[float, dict[str, Any]]] = []
    m = Meters("cpu", heartbeat=lambda hb: beats.append((time.monotonic(), hb)), heartbeat_s=10.0)
    with m:
        time.sleep(0.1)
        t0 = time.monotonic()
        # Grow by 10 % of what this process already holds, twice the 5 % that sends a heartbeat (tests run before
        # may have left it large), and by at least 100 MiB.
        grow = max(100 * MiB, int(0.10 * psutil.Process().memory_info().rss))
        block = np.ones(grow // 8)
        deadline = time.monotonic() + 3.0
        while not beats and time.monotonic() < deadline:
            time.sleep(0.01)
        del block
    assert beats, "a 5 % growth of the peak sends a heartbeat before the 10 s period"
    t, hb = beats[0]
    assert t - t0 < 2.0
    assert hb["memory"]["cpu_peak_rss_mib"] > 0
    assert set(hb["energy_j"]) == {"cpu", "gpu"}
    assert hb["memory_note"].startswith("cpu:") and hb["energy_note"]


def test_heartbeats_come_every_period_from_the_sampler_and_stop_with_the_meters():
    beats: list[dict[str, Any]] = []
    m = Meters("cpu", heartbeat=beats.append, heartbeat_s=0.1)
    with m:
        threads = list(m._threads)
        time.sleep(0.75)
    n = len(beats)
    assert 3 <= n <= 12, n  # every 0.1 s (growth beats are capped at 20 a second; a loaded machine beats later)
    assert all(b["memory_note"].startswith("cpu:") and b["energy_note"] for b in beats)
    assert m.heartbeats == n and len(threads) == 2 and not any(t.is_alive() for t in threads)
    time.sleep(0.25)
    assert len(beats) == n, "no heartbeat after the meters stopped"
    assert m.own_cpu_seconds() is None or m.own_cpu_seconds() >= 0.0


def test_heartbeats_fold_into_the_parents_snapshot_as_running_maxima():
    snapshot = TrialRecord.model_validate(
        {"trial_id": "t", "memory": {"cpu_peak_rss_mib": 500.0, "cpu_baseline_rss_mib": 300.0, "gpu_peak_used_mib": None},
         "energy_j": {"cpu": None, "gpu": None}, "seconds_total": 5.0})
    snapshot.merge_heartbeat(HeartbeatEvent(**{"memory": {"cpu_peak_rss_mib": 800.0, "cpu_baseline_rss_mib": 310.0},
                                               "energy_j": {"cpu": 12.0, "gpu": None}, "seconds_total": 7.5}))
    snapshot.merge_heartbeat(HeartbeatEvent(**{"memory": {"cpu_peak_rss_mib": 700.0}, "seconds_total": 6.0}))  # late
    rec = snapshot.dump()
    assert rec["memory"]["cpu_peak_rss_mib"] == 800.0
    assert rec["memory"]["cpu_baseline_rss_mib"] == 300.0  # not a peak: the first value stays
    assert rec["energy_j"] == {"cpu": 12.0, "gpu": None}
    assert rec["seconds_total"] == 7.5


# --------------------------------------------------------------------------------------------------
# CUDA memory (skipped without a GPU)
# --------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_cuda_allocated_is_measured_within_5_percent():
    from harness.meters.cuda_memory import CudaMemory

    cm = CudaMemory("cuda:0")
    cm.start()
    base = torch.cuda.memory_allocated()
    x = torch.ones(200 * MiB // 4, dtype=torch.float32, device="cuda:0")
    torch.cuda.synchronize()
    cm.sample()
    summary = cm.summary()
    del x
    cm.stop()
    grown = summary["cuda_peak_allocated_mib"] - base / MiB
    assert abs(grown - 200) <= 10, grown
    assert summary["cuda_peak_reserved_mib"] >= summary["cuda_peak_allocated_mib"]
    assert summary["gpu_total_mib"] > 0
    if cm.handle is not None:
        assert summary["gpu_peak_used_mib"] >= 200  # NVML sees the tensor and the context


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_gpu_budget_makes_the_allocator_raise_oom():
    from harness.executors.budget import apply_gpu_budget

    how = apply_gpu_budget(256 * MiB, "cuda:0")
    assert "set_per_process_memory_fraction" in how
    with pytest.raises(torch.OutOfMemoryError):
        torch.empty(512 * MiB, dtype=torch.uint8, device="cuda:0")
    torch.cuda.set_per_process_memory_fraction(1.0, 0)


# --------------------------------------------------------------------------------------------------
# Budgets
# --------------------------------------------------------------------------------------------------
def test_the_watchdog_reports_then_kills_past_the_budget():
    from harness.executors.budget import RssWatchdog

    tree = TreeRss()
    reports, kills = [], []
    dog = RssWatchdog(tree.read() + 50 * MiB, report=reports.append, kill=kills.append)
    assert not dog.check()
    block = np.ones(100 * MiB // 8)
    assert dog.check()
    del block
    assert reports and reports[0]["type"] == "budget_exceeded" and "watchdog" in reports[0]["reason"]
    assert kills and kills[0][0] == os.getpid()  # the fake kill got this process first... and nothing died
    assert not dog.check()  # fires once


def _cgroup_or_skip():
    from harness.executors.budget import BudgetError, find_cgroup

    try:
        return find_cgroup()
    except BudgetError as exc:
        pytest.skip(f"no memory cgroup can be made here: {exc}")


def test_a_cgroup_budget_kills_past_its_limit_and_says_so():
    from harness.executors.budget import CgroupLimit

    _cgroup_or_skip()
    cg = CgroupLimit.create(200 * MiB, f"harness-test-{os.getpid()}")
    try:
        code = (f"open({str(cg.path / 'cgroup.procs')!r}, 'w').write(str(__import__('os').getpid()))\n"
                "chunks = [b'x' * (50 * 2**20) for _ in range(8)]\n")
        proc = subprocess.run([sys.executable, "-c", code], timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert cg.oom_kills() and cg.oom_kills() >= 1
        assert cg.peak_bytes() <= 200 * MiB + MiB
    finally:
        assert cg.remove()
    assert not cg.path.exists()


def test_a_budget_between_two_batches_gives_one_oom_and_one_ok_and_the_grid_finishes(tmp_path):
    from rich.console import Console

    from harness.run import run_grid

    src = long_csv(tmp_path / "long.csv")
    grid = tmp_path / "grid.toml"
    grid.write_text(grid_text(src, [4, 32], 'cpu_memory = "900MiB"'))
    out = run_grid(str(grid), out=str(tmp_path / "run"), console=Console(file=io.StringIO()), report=False)
    by_batch = {r["params"]["batch_size"]: r for r in out.records}
    assert sorted(by_batch) == [4, 32]
    ok, oom = by_batch[4], by_batch[32]
    assert ok["status"] == "ok" and ok["oom"] is None
    assert oom["status"] == "oom", oom["error"]
    assert oom["oom"]["phase"] == "train" and oom["oom"]["epoch"] == 1
    for r in (ok, oom):
        assert r["memory_budget"]["cpu_bytes"] == 900 * MiB
        assert r["memory_budget"]["cpu_enforced_by"]  # cgroup or watchdog, and says which
        assert r["memory"]["cpu_peak_rss_mib"] > r["memory"]["cpu_baseline_rss_mib"] > 0
        assert r["cost_usd"] is not None and r["cost_note"].startswith("cpu at")
        assert r["energy_j"] == {"cpu": None, "gpu": None} or r["energy_note"]
    assert ok["memory"]["cpu_peak_rss_mib"] < 900
    assert oom["memory"]["cpu_peak_rss_mib"] > ok["memory"]["cpu_peak_rss_mib"]  # the peak seen until the kill
    assert ok["flops"] > 0 and ok["mfu"] is None and "CPU" in ok["mfu_note"]


def test_a_child_killed_with_sigkill_from_outside_is_an_error_with_its_phase(tmp_path):
    from harness.executors.local import ChildRun

    src = long_csv(tmp_path / "long.csv", long_rows=36)  # every batch 512 tokens wide: training lasts seconds
    (trial,) = expand(parse_grid(grid_text(src, [4], epochs=3)))
    killed: list[dict[str, Any]] = []

    def on_event(t: Trial, event: dict[str, Any]) -> None:
        if event.get("type") == "heartbeat" and event.get("phase") == "train" and not killed:
            killed.append(event)
            os.kill(run.process.pid, signal.SIGKILL)

    run = ChildRun(trial, on_event)
    run.start()
    try:
        rec = run.wait()
    finally:
        run.close()
    assert killed, "the trial finished before a heartbeat in training came"
    # no budget and the kernel's oom_kill counters still: not memory, an error naming the signal (issue 15)
    assert rec["status"] == "error" and "SIGKILL" in rec["error"] and "from outside" in rec["error"]
    assert rec["oom"] is None
    assert f"(phase train, epoch {killed[0]['epoch']})" in rec["notes"][-1]
    assert rec["memory"]["cpu_peak_rss_mib"] >= killed[0]["memory"]["cpu_peak_rss_mib"]
    assert rec["seconds_total"] >= killed[0]["seconds_total"]
    assert rec["cost_usd"] is not None  # the time spent until the kill, priced
    # Every null the parent leaves says why, and the figures it kept say how they were taken.
    assert rec["flops"] is None and rec["mfu"] is None and "stopped (error)" in rec["mfu_note"]
    assert rec["memory_note"].startswith("cpu: peak RSS of the trial's process tree")
    assert rec["energy_note"]


# --------------------------------------------------------------------------------------------------
# Energy: measured or null with the reason
# --------------------------------------------------------------------------------------------------
def fake_rapl(root: Path, value: int, max_range: int = 1000) -> Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{value}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    sub = root / "intel-rapl:0:0"  # a core sub-zone: not a package, not counted
    sub.mkdir(exist_ok=True)
    (sub / "name").write_text("core\n")
    (sub / "energy_uj").write_text("5\n")
    return zone


def test_rapl_absent_gives_null_and_the_reason(tmp_path):
    m = E.EnergyMeter("cpu", rapl_root=str(tmp_path / "powercap"))
    m.start()
    m.stop()
    assert m.summary() == {"cpu": None, "gpu": None}
    assert "RAPL not readable" in m.note() and "absent" in m.note()
    assert "gpu: not used by this trial" in m.note()


def test_rapl_unreadable_gives_null_and_the_reason(tmp_path, monkeypatch):
    fake_rapl(tmp_path, 100)
    real = E._read_int

    def denied(path: str) -> int:
        if path.endswith("energy_uj"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(E, "_read_int", denied)
    r = E.Rapl(str(tmp_path))
    assert not r.start()
    assert r.joules() is None and "permission denied" in r.reason


def test_rapl_counts_package_energy_across_a_wraparound(tmp_path):
    zone = fake_rapl(tmp_path, 900, max_range=1000)
    r = E.Rapl(str(tmp_path))
    assert r.start()
    (zone / "energy_uj").write_text("950\n")
    r.sample()
    (zone / "energy_uj").write_text("30\n")  # wrapped: 50 to the top, then 30
    r.sample()
    assert r.joules() == pytest.approx((50 + 50 + 30) / 1e6)
    assert "intel-rapl:0 package-0" in r.describe()


class FakeNvml:
    """Just enough of pynvml for the GPU energy meter."""

    class NVMLError_NotSupported(Exception):
        pass

    def __init__(self, counter: bool):
        self.counter, self.mj, self.mw = counter, 1_000_000, 100_000

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        if not self.counter:
            raise self.NVMLError_NotSupported("Not Supported")
        return self.mj

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return self.mw


def test_gpu_energy_from_the_counter_or_integrated_power(monkeypatch):
    nv = FakeNvml(counter=True)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    g = E.GpuEnergy("handle", None)
    g.start()
    nv.mj += 2500  # 2.5 J
    g.sample()
    assert g.method == "counter" and g.joules() == pytest.approx(2.5)

    nv = FakeNvml(counter=False)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    g = E.GpuEnergy("handle", None)
    g.start()
    assert g.method == "power"
    t0 = g._last_power[0]
    monkeypatch.setattr(E.time, "monotonic", lambda: t0 + 2.0)
    g.sample()  # 100 W held for 2 s
    assert g.joules() == pytest.approx(200.0)
    assert "trapezoid" in g.describe(0.05)


def test_no_nvml_gives_null_gpu_energy_and_the_reason():
    m = E.EnergyMeter("cuda:0", gpu_handle=None, gpu_reason="NVML unavailable (driver not loaded)", rapl_root="/nonexistent")
    m.start()
    m.stop()
    assert m.summary() == {"cpu": None, "gpu": None}
    assert "gpu: NVML unavailable (driver not loaded)" in m.note()


# --------------------------------------------------------------------------------------------------
# Cost
# --------------------------------------------------------------------------------------------------
PRICES = {"cpu": 0.096, "t4": 0.526, "a10g": 1.006, "l4": 0.805, "a100": 4.10, "h100": 6.88, "h200": 7.91}


@pytest.mark.parametrize("name, key", [
    ("Tesla T4", "t4"), ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA A100-SXM4-40GB", "a100"),
    ("NVIDIA A10G", "a10g"), ("NVIDIA L4", "l4"), ("NVIDIA H200", "h200"),
    ("NVIDIA L40S", None), ("NVIDIA GH200 480GB", None), ("NVIDIA RTX A6000", None),
])
def test_gpu_names_match_price_keys_as_words(name, key):
    assert match_device(name, "cuda:0", PRICES) == key


def test_cost_arithmetic():
    cost, note = trial_cost("Intel Xeon (2 threads)", "cpu", 1800.0, PRICES)
    assert cost == pytest.approx(0.048) and note == "cpu at 0.096 USD per device-hour x 1800.0 s"
    cost, _ = trial_cost("Tesla T4", "cuda", 3600.0, PRICES)
    assert cost == pytest.approx(0.526)
    cost, note = trial_cost("Tesla T4", "cuda", 3600.0, PRICES, price_per_kwh=0.2, energy_j={"cpu": 1.8e6, "gpu": 1.8e6})
    assert cost == pytest.approx(0.526 + 0.2) and "3600000 J measured (cpu + gpu)" in note
    cost, note = trial_cost("Tesla T4", "cuda", 3600.0, PRICES, price_per_kwh=0.2, energy_j={"cpu": None, "gpu": None})
    assert cost == pytest.approx(0.526) and "not applied: no energy was measured" in note
    cost, note = trial_cost("NVIDIA RTX A6000", "cuda", 3600.0, PRICES)
    assert cost is None and "A6000" in note and "device_hour_usd" in note
    assert trial_cost(None, "cpu", None, PRICES)[0] is None


# --------------------------------------------------------------------------------------------------
# FLOPs and MFU
# --------------------------------------------------------------------------------------------------
SHAPE = EncoderShape(layer_params=(100,) * 4, attn_width=8, pooler_params=10, head_params=5, input_params=(30,) * 4)


def test_frozen_all_with_the_cache_counts_the_trunk_once():
    w = Work.uniform(10, 200)
    trunk = forward_flops(SHAPE, w, range(4), pooler=True, head=False)
    one = trial_flops(SHAPE, None, True, [w], [w], cache=w)
    three = trial_flops(SHAPE, None, True, [w] * 3, [w] * 3, cache=w)
    assert one.parts["cache"] == three.parts["cache"] == trunk
    head = 2 * 5 * 10
    assert three.parts["train"] == pytest.approx(3 * 3 * head)  # head forward + backward, 3 epochs
    assert three.parts["eval"] == pytest.approx(3 * head)
    uncached = trial_flops(SHAPE, None, False, [w] * 3, [w] * 3)
    assert "cache" not in uncached.parts
    assert uncached.parts["train"] == pytest.approx(3 * (trunk + 3 * head))  # the trunk every epoch, forward only


def test_trained_layers_count_forward_and_backward_frozen_ones_forward_only():
    w = Work.uniform(10, 200)
    full = forward_flops(SHAPE, w, range(4), pooler=True, head=True)
    assert trial_flops(SHAPE, 0, False, [w], []).total == pytest.approx(3 * full)
    frozen2 = trial_flops(SHAPE, 2, False, [w], []).total
    bottom = forward_flops(SHAPE, w, range(2), pooler=False, head=False)
    top = forward_flops(SHAPE, w, range(2, 4), pooler=True, head=True)
    assert frozen2 == pytest.approx(bottom + 3 * top - 2 * 30 * 200)  # no input gradient below block 2
    cached2 = trial_flops(SHAPE, 2, True, [w], [], cache=w)
    assert cached2.parts["cache"] == pytest.approx(bottom)
    assert cached2.parts["train"] == pytest.approx(3 * top - 2 * 30 * 200)


@pytest.mark.parametrize("shape_name", ["bert-tiny", "distilbert-tiny"])
@pytest.mark.parametrize("frozen", [0, 1, "all"])
def test_flop_count_matches_torchs_flop_counter(shape_name, frozen):
    import transformers
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForSequenceClassification

    from harness.core.models import RANDOM_SHAPES, freeze

    cls, kwargs = RANDOM_SHAPES[shape_name]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(getattr(transformers, cls)(**kwargs, num_labels=2),
                                                           attn_implementation="eager")
    freeze(model, frozen)
    model.train()
    B, L = 4, 32
    with FlopCounterMode(display=False) as counter:
        model(input_ids=torch.randint(5, 1000, (B, L)), labels=torch.zeros(B, dtype=torch.long)).loss.backward()
    mine = trial_flops(shape_of(model), None if frozen == "all" else frozen, False, [Work(B, B * L, B * L * L)], []).total
    assert mine == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_mfu_needs_a_known_peak():
    value, note = mfu(1e12, 1.0, "Intel Xeon", "cpu", "fp32")
    assert value is None and "peak FLOP/s unknown for this CPU" in note
    value, note = mfu(1e12, 1.0, "Intel Xeon", "cpu", "fp32", overrides={"cpu": {"fp32": 2.0}})
    assert value == pytest.approx(0.5)
    value, note = mfu(65e12, 2.0, "Tesla T4", "cuda:0", "fp16")
    assert value == pytest.approx(0.5) and "t4 fp16 peak 65" in note
    value, note = mfu(1e12, 1.0, "Tesla T4", "cuda:0", "bf16")
    assert value is None and "no bf16 peak for t4" in note
    value, note = mfu(1e12, 1.0, "NVIDIA H100 PCIe", "cuda:0", "bf16")
    assert value == pytest.approx(1e12 / 756e12, rel=1e-3)  # the PCIe card, not the SXM one
    assert mfu(1e12, 1.0, "NVIDIA RTX A6000", "cuda:0", "bf16")[0] is None


# --------------------------------------------------------------------------------------------------
# Bad input: one clear line, exit 2
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limits_or_cost, expect", [
    ('[limits]\ncpu_memory = "4 gigs"', "[limits] cpu_memory"),
    ('[limits]\ncpu_memory = "-4GiB"', "positive size"),
    ('[limits]\ncpu_memory = -5', "positive size"),
    ('[limits]\ncpu_memory = "64TiB"', "more than this machine has"),
    ('[limits]\ncpu_memory_method = "ulimit"', "[limits] cpu_memory_method"),
    ('[cost]\ndevice_hour_usd = {t4 = "cheap"}', "expected a price in USD per hour"),
    ('[cost]\ndevice_hour_usd = {a6000 = 1.0}', "unknown device name 'a6000'"),
    ('[cost]\nprice_per_kwh = "0.3"', "[cost] price_per_kwh"),
    ('[cost]\npeak_tflops = {t4 = {fp8 = 100}}', "unknown precision"),
    ('[cost]\npeak_tflops = {cpu = {fp32 = -1}}', "a number > 0"),
    ('[cost]\npeak_tflops = {rtx4090 = {fp32 = 80}}', "unknown device name 'rtx4090'"),
    ('[search]\nprobe_steps = 0', "[search] probe_steps"),
    ('[cost]\nadd_devices = ["h100"]', "already a known device"),
    ('[cost]\nadd_devices = "rtx a6000"', "expected a list of device names"),
    ('[cost]\nadd_devices = ["rtx a6000"]\ndevice_hour_usd = {h1OO = 2.0}', "unknown device name 'h1OO'"),
])
def test_bad_budgets_prices_and_devices_are_one_line_and_exit_2(tmp_path, capsys, limits_or_cost, expect):
    from harness.cli import main

    grid = tmp_path / "bad.toml"
    grid.write_text('name = "bad"\n[grid]\ndataset_size = [40]\nbatch_size = [8]\nfrozen_layers = [0]\n'
                    f'device = ["cpu"]\n{limits_or_cost}\n')
    assert main(["run", str(grid), "--out", str(tmp_path / "run"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    assert not (tmp_path / "run").exists()


def test_a_device_named_in_add_devices_gets_a_price_and_a_peak():
    from harness.meters.flops import mfu

    cfg = parse_grid('name = "g"\n[grid]\ndataset_size = [40]\nbatch_size = [8]\nfrozen_layers = [0]\n'
                     'device = ["cuda"]\n[cost]\nadd_devices = ["RTX  A6000"]\n'
                     'device_hour_usd = {"rtx a6000" = 0.8}\npeak_tflops = {"RTX A6000" = {fp32 = 40}}\n')
    (trial,) = expand(cfg)
    cost, note = trial_cost("NVIDIA RTX A6000", "cuda:0", 3600.0, trial.prices)
    assert cost == pytest.approx(0.8) and note.startswith("rtx a6000 at 0.8 USD")
    value, note = mfu(4e13, 10.0, "NVIDIA RTX A6000", "cuda:0", "fp32", trial.peak_tflops)
    assert value == pytest.approx(0.1), note


# --------------------------------------------------------------------------------------------------
# Largest batch that fits (the search logic, with a fake executor: no child processes)
# --------------------------------------------------------------------------------------------------
class FakeExecutor:
    """Trials 'fit' up to `fits` per frozen setting; records their batches."""

    def __init__(self, fits: dict[Any, int]):
        self.fits, self.ran = fits, []

    def run(self, trials: list[Trial], events: Any) -> None:
        for t in trials:
            b = t.params["batch_size"]
            self.ran.append((t.params["frozen_layers"], b, t.kind, t.params.get("max_steps")))
            ok = b <= self.fits[t.params["frozen_layers"]]
            events.trial_finished(t, {"trial_id": t.trial_id, "status": "ok" if ok else "oom",
                                      "oom": None if ok else {"phase": "train", "epoch": 1},
                                      "memory": {"cpu_peak_rss_mib": 100.0 + b}, "seconds_total": 1.0,
                                      "cost_usd": 0.001, "device_name": "cpu", "host": "h",
                                      "memory_budget": {"cpu_bytes": 2**30, "cpu_enforced_by": "test"}})


class Collect:
    def __init__(self, records: list[dict[str, Any]] | None = None):
        self.records = records or []
        self.finished: list[tuple[Trial, dict[str, Any]]] = []

    def trial_finished(self, t: Trial, rec: dict[str, Any]) -> None:
        self.finished.append((t, rec))

    def stopping(self) -> bool:
        return False


def search_cfg(extra: str = ""):
    return parse_grid(f"""
name = "search"
[data]
source = "embedded:reviews"
[grid]
dataset_size = [400]
batch_size = [8, 16]
frozen_layers = [0, "all"]
device = ["cpu"]
[limits]
cpu_memory = "1GiB"
[search]
max_batch = true
{extra}
""")


def test_search_doubles_then_bisects_per_grid_point():
    from harness.search import search_max_batch

    cfg = search_cfg()
    ex, ev = FakeExecutor({0: 37, "all": 300}), Collect()
    results = search_max_batch(cfg, expand(cfg), ex, ev)
    assert len(results) == len(ev.finished) == 2  # one per frozen setting, the batch axis taken out
    got = {r["params"]["frozen_layers"]: r for r in results}
    assert got[0]["max_batch"] == 37 and got[0]["smallest_oom_batch"] == 38
    assert got["all"]["max_batch"] == 300 and got["all"]["smallest_oom_batch"] == 301
    r = got[0]
    assert r["kind"] == "max_batch" and r["status"] == "ok" and r["params"]["search"] == "max_batch"
    assert r["params"]["batch_size"] == 37
    tried = [p["batch_size"] for p in r["probes"]]
    assert tried == sorted(set(tried)) and {1, 2, 4, 8, 16, 32, 64, 37, 38} <= set(tried)
    assert all(p["status"] in ("ok", "oom") and p["cpu_peak_rss_mib"] for p in r["probes"])
    assert r["memory"]["cpu_peak_rss_mib"] == 137.0  # the largest batch that fitted
    assert r["memory_budget"]["cpu_bytes"] == 2**30
    assert all(kind == "probe" and steps == 3 for _, _, kind, steps in ex.ran)
    assert len({t.trial_id for t, _ in ev.finished}) == 2


def test_search_stops_at_the_training_set_and_reuses_grid_results():
    from harness.search import search_max_batch

    cfg = search_cfg("max_batch_limit = 4096\nstart_batch = 8")
    trials = expand(cfg)
    grid_records = [{"trial_id": t.trial_id, "kind": "train", "status": "ok", "params": t.params,
                     "memory": {"cpu_peak_rss_mib": 1.0}} for t in trials if t.params["frozen_layers"] == "all"]
    ex = FakeExecutor({0: 10**6, "all": 10**6})
    results = search_max_batch(cfg, trials, ex, Collect(grid_records))
    for r in results:
        assert r["max_batch"] == 360 and r["limited_by"] == "training set size"  # 400 rows, 40 for validation
    assert (("all", 8, "probe", 3) not in ex.ran) and (("all", 16, "probe", 3) not in ex.ran)  # from the grid
    assert ("all", 32, "probe", 3) in ex.ran


def test_the_machines_speed_is_a_timed_window_of_fixed_products():
    """meters/speed.py: GFLOP/s over at least the window asked, on torch's threads; a CPU trial's record
    carries one reading before its epochs and one after."""
    import torch

    from harness.meters.speed import measure

    r = measure(window_s=0.02, size=64)
    assert r.seconds >= 0.02 and r.gflops > 0 and r.threads == torch.get_num_threads()


def test_the_speed_reading_leaves_the_trials_random_numbers_alone():
    """The meter draws its matrices from a generator of its own: a seeded trial draws the same dropout masks
    and shuffles with the reading between its seed and its first draw as without it."""
    import torch

    from harness.meters.speed import measure

    torch.manual_seed(0)
    plain = torch.rand(5)
    torch.manual_seed(0)
    measure(window_s=0.01, size=32)
    assert torch.equal(torch.rand(5), plain)
