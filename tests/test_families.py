"""Every model family harness knows, on a tiny random config: what freezing "all", N and 0 leaves trainable,
the frozen-prefix cache's logits against the uncached forward at every depth, and a 2-epoch trial end to end.

One table (`FAMILY_SHAPES`) drives all three; README's "Models" table lists the same families. The tiny
shapes are `models.RANDOM_SHAPES` with a 1,200-id vocabulary (ids below stay < 1,200) and a wide initialiser,
so that logits differ clearly between examples (a cache that mixed examples up would not pass).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from harness.config import parse_grid
from harness.core.data import Encoded
from harness.core.models import (FAMILIES, ModelError, anatomy, check_depth, family_of, freeze, from_config,
                                  random_config)
from harness.core.train import Trainer
from harness.trial import run_trial
from harness.grid import expand

# family name -> tiny random shape (README's Models table names the same test ids)
FAMILY_SHAPES = {
    "BERT": "bert-tiny",
    "DistilBERT": "distilbert-tiny",
    "RoBERTa": "roberta-tiny",
    "XLM-RoBERTa": "xlm-roberta-tiny",
    "ELECTRA": "electra-tiny",
    "DeBERTa-v2/v3": "deberta-v3-tiny",
    "ModernBERT": "modernbert-tiny",
    "ALBERT": "albert-tiny",
    "GPT-2": "gpt2-tiny",
    "Llama/Qwen2/Mistral": "qwen2-tiny",
}
# More shapes of the same families: DeBERTa-v2 with its conv after block 0, Llama and Mistral decoders.
EXTRA_SHAPES = ["deberta-v2-tiny", "llama-tiny", "mistral-tiny"]
SHAPES = list(FAMILY_SHAPES.values()) + EXTRA_SHAPES


def test_the_table_covers_every_family():
    assert sorted(FAMILY_SHAPES) == sorted(f.name for f in FAMILIES)
    for shape in SHAPES:
        assert family_of(random_config(shape).model_type) is not None, shape


def tiny(shape: str, seed: int = 0) -> torch.nn.Module:
    config = random_config(shape, 2, pad_token_id=0)
    config.vocab_size = 1200
    config.initializer_range = 0.3
    torch.manual_seed(seed)
    return from_config(config, "sdpa").eval()


def n_params(modules: Any) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


# --------------------------------------------------------------------------------------------------
# Freezing
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_trainable_counts_for_all_n_and_0(shape: str) -> None:
    model = tiny(shape)
    parts = anatomy(model)
    total = sum(p.numel() for p in model.parameters())
    stem = n_params([m for _, m in parts.stem] + list(parts.below))
    base = n_params([parts.base])
    assert freeze(model, 0) == (total, total)
    assert freeze(model, "all") == (total - base, total)
    assert total - base > 0  # a head trains
    depth = parts.num_layers
    if parts.family.shared_blocks:
        with pytest.raises(ModelError, match="shares one block"):
            freeze(model, 1)
        assert freeze(model, depth) == (total - stem - n_params(parts.layers), total)
        return
    for n in range(1, depth + 1):
        assert freeze(model, n) == (total - stem - n_params(parts.layers[:n]), total), n
    with pytest.raises(ModelError, match=f"has {depth} layers"):
        freeze(model, depth + 1)


def test_unknown_family_freezes_all_and_0_and_refuses_a_partial_depth() -> None:
    from transformers import AutoModelForSequenceClassification, FunnelConfig

    config = FunnelConfig(vocab_size=1200, d_model=32, n_head=2, d_head=16, d_inner=64, block_sizes=[1, 1],
                          num_decoder_layers=1, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    assert freeze(model, 0) == (total, total)
    trainable, _ = freeze(model, "all")
    assert 0 < trainable < total
    with pytest.raises(ModelError, match="'funnel' is not known to harness; expected 0 or \"all\""):
        freeze(model, 1)
    with pytest.raises(ModelError, match="not known"):
        check_depth(1, config.to_dict(), "m")


# --------------------------------------------------------------------------------------------------
# The frozen-prefix cache
# --------------------------------------------------------------------------------------------------
def encoded(n: int, seed: int) -> Encoded:
    rng = np.random.default_rng(seed)
    ids = [[101, *rng.integers(200, 1200, int(rng.integers(1, 12))).tolist(), 102] for _ in range(n)]
    return Encoded(ids, rng.integers(0, 2, n), None, 0)


def trainer(model: torch.nn.Module, frozen: Any) -> Trainer:
    freeze(model, frozen)
    p = {"model": "random", "frozen_layers": frozen, "precision": "fp32", "seed": 0, "optimizer": "sgd",
         "learning_rate": 0.005, "momentum": 0.0, "weight_decay": 0.0, "batch_size": 4, "eval_batch_size": 4,
         "epochs": 1, "padding": "batch", "cache_frozen": True, "length_buckets": True, "frozen_dropout": False,
         "fused_optimizer": False, "compile": False, "device": "cpu"}
    return Trainer(model, encoded(10, 1), encoded(7, 2), p, torch.device("cpu"))


@pytest.mark.parametrize("shape", SHAPES)
def test_cached_logits_equal_the_uncached_forward_at_every_depth(shape: str) -> None:
    model = tiny(shape)
    parts = anatomy(model)
    depths: list[Any] = ["all", *range(1, parts.num_layers + 1)]
    if parts.family.shared_blocks:
        depths = ["all", parts.num_layers]
    for frozen in depths:
        t = trainer(model, frozen)
        if not t.uses_cache():  # ALBERT at its depth: no cache, said in the record
            assert parts.family.shared_blocks and "shares one block" in t.result.cache_note
            continue
        t.build_cache()
        t.model.eval()
        for coll, offset in ((t.collate_train, 0), (t.collate_val, len(t.train_set))):
            b = coll(np.arange(len(coll.lengths)))
            with torch.no_grad():
                ref = t.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                with t.view:
                    args = t._cached_args(b["index"] + offset, b["labels"], None)
                    args.pop("labels")
                    got = t.model(**args).logits
            scale = float(ref.abs().max())
            assert float((ref - ref.mean(0)).abs().max()) > 1e-3 * scale, "examples must differ for the check to mean something"
            assert float((ref - got).abs().max()) <= 1e-4 * scale, (shape, frozen, ref, got)
        assert t.verify_cache() <= 1e-4, (shape, frozen)


# --------------------------------------------------------------------------------------------------
# A 2-epoch trial end to end
# --------------------------------------------------------------------------------------------------
GRID = """
name = "family"
[model]
name = "random:{shape}"
max_length = 24
[data]
source = "embedded:reviews"
[train]
epochs = 2
strategy = "{strategy}"
learning_rate = 0.01
[grid]
dataset_size = [32]
batch_size = [8]
frozen_layers = [{frozen}]
device = ["cpu"]
"""


@pytest.mark.parametrize("shape", list(FAMILY_SHAPES.values()))
def test_two_epochs_end_to_end(shape: str) -> None:
    """fast with a partial depth (the cache above block 1; ALBERT: "all"), 2 epochs, in-process."""
    frozen = '"all"' if shape.startswith("albert") else "1"
    (trial,) = expand(parse_grid(GRID.format(shape=shape, strategy="fast", frozen=frozen)))
    rec = run_trial(trial)
    assert rec["status"] == "ok", rec.get("traceback")
    assert len(rec["epochs"]) == 2
    assert all(np.isfinite(e["train_loss"]) and np.isfinite(e["val_loss"]) for e in rec["epochs"])
    assert rec["strategy_detail"]["cache_used"] is True
    assert rec["strategy_detail"]["cache_check_rel_diff"] <= 1e-4
    assert 0 < rec["trainable_params"] < rec["total_params"]


# --------------------------------------------------------------------------------------------------
# CUDA, bf16: a decoder and a modern encoder (skip without CUDA; bench/gpu_check.sh runs them)
# --------------------------------------------------------------------------------------------------
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
@pytest.mark.parametrize("shape", ["qwen2-tiny", "modernbert-tiny", "gpt2-tiny", "deberta-v3-tiny"])
@pytest.mark.parametrize("frozen", ['"all"', "1"])
def test_cuda_bf16_two_epochs(shape: str, frozen: str) -> None:
    grid = GRID.format(shape=shape, strategy="fast", frozen=frozen).replace('device = ["cpu"]', 'device = ["cuda"]')
    grid = grid.replace('strategy = "fast"', 'strategy = "fast"\nprecision = "bf16"')
    (trial,) = expand(parse_grid(grid))
    rec = run_trial(trial)
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["strategy_detail"]["precision"] == "bf16"
    assert rec["strategy_detail"]["cache_used"] is True
    assert rec["strategy_detail"]["cache_check_rel_diff"] <= 5e-2
    assert all(np.isfinite(e["val_loss"]) for e in rec["epochs"])


# Published parameter counts (millions, with a 2-label head) of the base shapes, built on the meta device
# (no memory, no initialisation): a shape whose config fell back to some other default size fails here.
PUBLISHED_M = {"distilbert-base": 67.0, "bert-base": 109.5, "roberta-base": 124.6, "xlm-roberta-base": 278.0,
               "electra-base": 109.5, "deberta-v3-base": 184.4, "modernbert-base": 149.6, "albert-base": 11.8,
               "gpt2": 124.4, "qwen2-0.5b": 494.0, "smollm2-135m": 134.5}


@pytest.mark.parametrize("shape", list(PUBLISHED_M))
def test_base_shapes_have_the_published_size(shape: str) -> None:
    with torch.device("meta"):
        model = from_config(random_config(shape), "sdpa")
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == PUBLISHED_M[shape]
    assert family_of(model.config.model_type) is not None
