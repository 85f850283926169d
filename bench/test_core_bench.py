"""The core's hot paths at fixed small shapes (see `conftest.py`): one training step per strategy and
frozen depth, one evaluation step, tokenising and collating a batch, building the frozen-layer cache,
and the memory meter's sample. GPU variants skip without CUDA.

    pytest bench/ --benchmark-autosave                                  # save a baseline (.benchmarks/)
    pytest bench/ --benchmark-compare --benchmark-compare-fail=median:15%   # fail on a 15 % slowdown
    pytest bench/ --benchmark-disable                                   # smoke test: each runs once

docs/performance.md ("Guarding speed") has the workflow and a planted slowdown caught by it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

# The fixed shapes (bench/conftest.py has them too; fixtures carry them to the tests).
LAYERS = 4
BATCH = 16
# At least 30 rounds of at least 2 ms each (sub-millisecond calls are repeated within a round), after a
# short warm-up, garbage collector off: the median of a handful of rounds swings by more than 15 % on
# shared cores.
pytestmark = pytest.mark.benchmark(min_rounds=30, min_time=0.002, warmup=True, warmup_iterations=5, disable_gc=True)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# (strategy, frozen depth): the lab's loop and the fast one at "all", at half the blocks, and at 0.
STEPS = [("lab", "all"), ("fast", "all"), ("lab", LAYERS // 2), ("fast", LAYERS // 2), ("lab", 0), ("fast", 0)]


def first_batch(t: Any, train: bool = True) -> tuple[dict[str, torch.Tensor], int]:
    args, real, _ = next(t._batches(train=train))
    return args, real


def _train_step(benchmark: Any, bench: Any, data: Any, strategy: str, frozen: Any, device: str = "cpu") -> None:
    assert (bench.layers, bench.batch) == (LAYERS, BATCH)
    t = bench.make_trainer(data, strategy, frozen, device)
    t.set_train_mode()
    with t._enter_cache():
        args, real = first_batch(t)
        t.train_step(args)  # warm up (first-call allocations)
        bench.measure(benchmark, lambda: t.train_step(args), tokens=real, device=device)
    benchmark.extra_info.update(strategy=strategy, frozen_layers=frozen, batch=args["labels"].shape[0])


@pytest.mark.parametrize("strategy,frozen", STEPS, ids=[f"{s}-frozen_{f}" for s, f in STEPS])
def test_train_step(benchmark: Any, bench: Any, bench_data: Any, strategy: str, frozen: Any) -> None:
    _train_step(benchmark, bench, bench_data, strategy, frozen)


@pytest.mark.parametrize("strategy", ["lab", "fast"])
def test_eval_step(benchmark: Any, bench: Any, bench_data: Any, strategy: str) -> None:
    t = bench.make_trainer(bench_data, strategy, LAYERS // 2)
    t.model.eval()

    def step() -> Any:
        with torch.no_grad(), t.autocast():
            return t.model(**args).logits

    with t._enter_cache():
        args, real = first_batch(t, train=False)
        step()
        bench.measure(benchmark, step, tokens=real)
    benchmark.extra_info.update(strategy=strategy, frozen_layers=LAYERS // 2)


def test_tokenize_and_collate(benchmark: Any, bench: Any, bench_data: Any) -> None:
    from harness.core.data import Encoded, tokenize
    from harness.core.train import Collator

    texts = bench_data.texts[:BATCH]
    pad = bench_data.tokenizer.pad_token_id or 0

    def run() -> dict[str, torch.Tensor]:
        ids = tokenize(bench_data.tokenizer, texts, bench.max_length)
        enc = Encoded(ids, bench_data.labels[:BATCH], None, pad)
        return Collator(enc)(np.arange(len(ids)))

    batch = run()
    bench.measure(benchmark, run, tokens=int(batch["attention_mask"].sum()))
    benchmark.extra_info.update(texts=len(texts), max_length=bench.max_length)


def test_collate_epoch(benchmark: Any, bench: Any, bench_data: Any) -> None:
    """Batch order and collation of one epoch of 1,024 rows (64 batches of 16, per-batch padding): long
    enough for a stable median, where a single 20-microsecond collate call is not."""
    from harness.core.data import Encoded
    from harness.core.train import Collator, batch_order

    enc = bench_data.train
    ids = (list(enc.ids) * (1024 // len(enc.ids) + 1))[:1024]
    big = Encoded(ids, np.resize(enc.labels, 1024), None, enc.pad_id)
    coll = Collator(big)

    def epoch() -> int:
        order = batch_order(coll.lengths, BATCH, np.random.default_rng(0), shuffle=True, drop_last=True, buckets=True)
        return sum(int(coll(index)["input_ids"].numel()) for index in order)

    epoch()
    bench.measure(benchmark, epoch, tokens=int(coll.lengths.sum()))


@pytest.mark.parametrize("frozen", ["all", LAYERS // 2])
def test_build_cache(benchmark: Any, bench: Any, bench_data: Any, frozen: Any) -> None:
    t = bench.make_trainer(bench_data, "fast", frozen)  # builds it once (warm-up)
    tokens = int(t.collate_train.lengths.sum() + t.collate_val.lengths.sum())
    bench.measure(benchmark, t.build_cache, tokens=tokens)
    benchmark.extra_info.update(frozen_layers=frozen, examples=len(t.train_set) + len(t.val_set),
                                cache_mib=round(t.result.cache_bytes / 2**20, 3))


def test_memory_meter_sample(benchmark: Any, bench: Any) -> None:
    from harness.meters.cpu_memory import CpuMemorySampler

    sampler = CpuMemorySampler()
    sampler.start(thread=False)
    bench.measure(benchmark, sampler.sample)


# GPU variants: the same steps on CUDA (skipped without it).
@needs_cuda
@pytest.mark.parametrize("strategy,frozen", STEPS, ids=[f"{s}-frozen_{f}" for s, f in STEPS])
def test_train_step_cuda(benchmark: Any, bench: Any, bench_data: Any, strategy: str, frozen: Any) -> None:
    _train_step(benchmark, bench, bench_data, strategy, frozen, device="cuda")


@needs_cuda
@pytest.mark.parametrize("frozen", ["all", LAYERS // 2])
def test_build_cache_cuda(benchmark: Any, bench: Any, bench_data: Any, frozen: Any) -> None:
    t = bench.make_trainer(bench_data, "fast", frozen, device="cuda")
    bench.measure(benchmark, t.build_cache, device="cuda")
