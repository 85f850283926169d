"""Cache-phase FLOPs: what the Trainer reports it ran vs the count the old re-simulation assumed
(max(batch_size, eval_batch_size) batches with length buckets), embedded MiniLM on 400 embedded reviews."""
import numpy as np, torch
from harness.config import STRATEGIES
from harness.core import data, train as T
from harness.core.models import load_model, freeze, encoder_shape
from harness.meters.flops import Work, trial_flops

rows = data.load_rows("embedded:reviews", "text", "label", "train")
tr, va = data.sample_and_split(rows, 400, 0.1, 324, "embedded:reviews")
for frozen in ("all", 4):
    loaded = load_model("embedded:minilm-l6", len(rows.label_names), seed=0)
    freeze(loaded.model, frozen)
    a, b = data.encode_split(loaded.tokenizer, rows, tr, va, 128, "batch")
    p = dict(STRATEGIES["fast"]); p.update(model="embedded:minilm-l6", frozen_layers=frozen, precision="fp32", seed=0,
        optimizer="sgd", learning_rate=0.005, momentum=0.0, weight_decay=0.0, batch_size=16, eval_batch_size=16, epochs=1, compile=False)
    t = T.Trainer(loaded.model, a, b, p, torch.device("cpu"))
    t.build_cache()
    shape = encoder_shape(t.model); depth = None if frozen == "all" else frozen
    new = trial_flops(shape, depth, True, [], [], Work.from_batches(t.work.cache)).parts["cache"]
    old_work = []
    for enc in (a, b):
        lens = enc.lengths()
        for idx in T.batch_order(lens, 16, np.random.default_rng(0), shuffle=False, drop_last=False, buckets=True):
            old_work.append((len(idx), int(lens[idx].max())))
    old = trial_flops(shape, depth, True, [], [], Work.from_batches(old_work)).parts["cache"]
    print(f"frozen={frozen}: batches run {len(t.work.cache)} (token-budgeted) vs {len(old_work)} assumed; "
          f"padded tokens {sum(n*l for n,l in t.work.cache)} vs {sum(n*l for n,l in old_work)}; "
          f"cache FLOPs {new:.4g} (reported) vs {old:.4g} (old count), old/new = {old/new:.4f}")
