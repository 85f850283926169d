"""Fixtures for the core's benchmarks (`bench/test_core_bench.py`): fixed small shapes, fixed data.

Shapes: a 4-block BERT (hidden 64, 2 heads, FFN 256) with the embedded MiniLM's WordPiece vocabulary
(30,522 ids), 64 rows of `embedded:reviews` tokenised to at most 32 tokens, batch 16: a training step
takes milliseconds, so each benchmark gets dozens of rounds and a stable median. Everything is
made once per session and is the same on every machine, so saved runs compare.

Threads and timer: the benchmarks run on ONE intra-op thread by default (`HARNESS_BENCH_THREADS` to
change it) and are timed by `bench_timer.uncontended`: wall time less the time the thread waited for a
CPU. On a machine whose cores are shared, a 2-thread kernel waits at every barrier for whichever thread
the scheduler parked, and wall-clock medians of identical runs differ by 20-90 %; one thread and this
timer are what make a 15 % threshold usable there (a sleep or an I/O wait still counts). The figures
guard against regressions; `docs/performance.md` has the 2-core throughput of whole trials.

The test module gets everything through fixtures (`bench_data`, `bench`), not by importing this file, so
that `pytest tests/ bench/` in one session cannot mix this conftest up with `tests/conftest.py`.

`bench.measure(benchmark, fn, tokens=...)` runs the benchmark, then runs `fn` once more outside the timing
under a 1 ms RSS sampler (and CUDA's allocator peak on a GPU) and puts in `benchmark.extra_info`:
`peak_rss_mib` (the process's resident memory at its highest during that call), `rss_growth_mib`
(above the RSS just before it), `cuda_peak_allocated_mib` on a GPU, and `tokens_per_s` (real tokens of
one call divided by the benchmark's median, or by that one call's time when timing is disabled).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch

from harness.config import STRATEGIES

THREADS = int(os.environ.get("HARNESS_BENCH_THREADS", "1"))
ROWS = 64
MAX_LENGTH = 32
BATCH = 16
LAYERS = 4
SHAPE = {"hidden_size": 64, "num_hidden_layers": LAYERS, "num_attention_heads": 2, "intermediate_size": 256}
CUDA = torch.cuda.is_available()

MiB = 2**20


torch.set_num_threads(THREADS)

TIMING_OPTIONS = ("benchmark_autosave", "benchmark_save", "benchmark_compare", "benchmark_compare_fail",
                  "benchmark_json", "benchmark_histogram")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """The project's default options untime benchmarks (`--benchmark-disable` in pyproject.toml, so that a
    plain `pytest` runs each once as a smoke test). Saving or comparing timings asks for them to be timed:
    any of --benchmark-autosave/-save/-compare/-compare-fail/-json/-histogram turns timing back on."""
    if any(getattr(config.option, name, None) for name in TIMING_OPTIONS):
        config.option.benchmark_enable = True
    # The default timer becomes bench_timer.uncontended (wall time less run-queue waits; see bench_timer.py)
    # when the benchmarks run on one thread; an explicit --benchmark-timer wins.
    if THREADS == 1 and getattr(config.option, "benchmark_timer", None) in (None, "time.perf_counter"):
        import bench_timer

        if bench_timer.available():
            config.option.benchmark_timer = "bench_timer.uncontended"


@dataclass
class BenchData:
    tokenizer: Any
    texts: list[str]
    labels: np.ndarray
    train: Any  # Encoded, padded per batch
    val: Any
    train_set_padded: Any  # Encoded, padded to the longest of the set (the lab)
    val_set_padded: Any


@pytest.fixture(scope="session")
def bench_data() -> BenchData:
    from harness.core.data import Encoded, tokenize
    from harness.core.models import load_tokenizer
    from harness.core.reviews import generate

    frame = generate()
    texts = frame["text"].astype(str).tolist()[:ROWS]
    labels = frame["label"].to_numpy()[:ROWS].astype(np.int64)
    tokenizer = load_tokenizer("random:bert-tiny")  # the embedded WordPiece vocabulary, offline
    ids = tokenize(tokenizer, texts, MAX_LENGTH)
    longest = max(len(x) for x in ids)
    n_train = ROWS * 3 // 4
    pad = tokenizer.pad_token_id or 0

    def enc(lo: int, hi: int, pad_to: int | None) -> Any:
        return Encoded(ids[lo:hi], labels[lo:hi], pad_to, pad)

    make_model()  # imports the model code once here, so that no benchmark's smoke run pays for it
    return BenchData(tokenizer, texts, labels, enc(0, n_train, None), enc(n_train, ROWS, None),
                     enc(0, n_train, longest), enc(n_train, ROWS, longest))


@dataclass
class Bench:
    """What the benchmarks use: the shapes, and the helpers below."""

    rows: int = ROWS
    max_length: int = MAX_LENGTH
    batch: int = BATCH
    layers: int = LAYERS
    cuda: bool = CUDA

    @staticmethod
    def make_trainer(data: BenchData, strategy: str, frozen: Any, device: str = "cpu", **switches: Any) -> Any:
        return make_trainer(data, strategy, frozen, device, **switches)

    @staticmethod
    def measure(benchmark: Any, fn: Callable[[], Any], *, tokens: int | None = None, device: str = "cpu") -> Any:
        return measure(benchmark, fn, tokens=tokens, device=device)


@pytest.fixture(scope="session")
def bench() -> Bench:
    return Bench()


def make_model(seed: int = 0) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification, BertConfig

    config = BertConfig(**SHAPE, num_labels=2)
    config.pad_token_id = 0
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")


def make_trainer(data: BenchData, strategy: str, frozen: Any, device: str = "cpu", **switches: Any) -> Any:
    """A Trainer as a trial builds it (the strategy's switches, `switches` on top), its cache built."""
    from harness.core.models import freeze
    from harness.core.train import Trainer

    model = make_model()
    freeze(model, frozen)
    model.to(device)
    p = dict(STRATEGIES[strategy])
    p.update(model="bench", frozen_layers=frozen, seed=0, optimizer="sgd", learning_rate=0.005, momentum=0.0,
             weight_decay=0.0, batch_size=BATCH, eval_batch_size=BATCH, epochs=1, device=device)
    p.update(switches)
    lab_padding = p["padding"] == "longest_in_set"
    train, val = (data.train_set_padded, data.val_set_padded) if lab_padding else (data.train, data.val)
    t = Trainer(model, train, val, p, torch.device(device))
    if t.uses_cache():
        t.build_cache()
    return t


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(benchmark: Any, fn: Callable[[], Any], *, tokens: int | None = None, device: str = "cpu") -> Any:
    """Benchmark `fn`, then one more call outside the timing for memory (and a rate when not timed)."""
    from harness.meters.cpu_memory import CpuMemorySampler

    def call() -> Any:
        out = fn()
        _sync(device)
        return out

    result = benchmark(call)
    sampler = CpuMemorySampler(interval_s=0.001)
    sampler.start()
    before = sampler.last
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    call()
    once = time.perf_counter() - t0
    sampler.stop()
    info = benchmark.extra_info
    info["peak_rss_mib"] = round(sampler.peak / MiB, 1)
    info["rss_growth_mib"] = round(max(0, sampler.peak - before) / MiB, 1)
    if device.startswith("cuda"):
        info["cuda_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / MiB, 1)
    stats = getattr(benchmark, "stats", None)
    median = getattr(getattr(stats, "stats", None), "median", None)
    seconds = median if median else once
    if tokens is not None:
        info["tokens"] = int(tokens)
        info["tokens_per_s"] = round(tokens / seconds, 1) if seconds > 0 else None
    info["threads"] = torch.get_num_threads()
    return result
