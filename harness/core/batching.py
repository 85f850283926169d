"""The order of a trial's batches: which examples share a batch, and how many tokens a cache-building forward
takes. No torch here: the planner (`harness plan`) replays the Trainer's batches with these same functions
without loading torch.
"""

from __future__ import annotations

import numpy as np

# Length buckets: examples are sorted by length within groups of MEGABATCH batches, then the batches are
# shuffled. 16 batches keep ~95 % of the padded tokens real on review-like data (50 gives ~97 %, no
# buckets ~63 %) while a batch's members still change from epoch to epoch.
MEGABATCH = 16
# Tokens per forward while building the cache (examples sorted by length, so batches carry little padding).
CACHE_BATCH_TOKENS = {"cpu": 8192, "cuda": 65536}


def batch_order(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, *, shuffle: bool,
                drop_last: bool, buckets: bool) -> list[np.ndarray]:
    """Example indices per batch. With `buckets`, examples of similar length share a batch (less padding)
    while the batches themselves come in random order, so training stays stochastic. `drop_last` drops
    the examples that do not fill a last batch (chosen at random when shuffling), as the lab's loader did."""
    n = len(lengths)
    order = rng.permutation(n) if shuffle else np.arange(n)
    if drop_last:
        order = order[: (n // batch_size) * batch_size]
    if buckets:
        chunks = []
        span = batch_size * MEGABATCH
        for start in range(0, len(order), span):
            part = order[start:start + span]
            chunks.append(part[np.argsort(-lengths[part], kind="stable")])
        order = np.concatenate(chunks) if chunks else order
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if buckets and shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
