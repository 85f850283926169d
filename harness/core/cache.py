"""The frozen-prefix cache: run the frozen bottom of the network once, train the rest on its outputs.

When the embeddings and the bottom N blocks are frozen and run in eval mode, their output for a given
example never changes, so computing it every epoch (as the lab did) is wasted work. We compute it once:

- `frozen_layers = "all"`: the head reads only the encoder's first-token state (and BERT's pooled output),
  so we keep just that, one vector per example. The encoder is replaced by a lookup during training.
- `frozen_layers = N`: we keep the hidden states after block N (unpadded, one [len, H] slice per example)
  and train blocks N.. and the head on them: the embeddings are replaced by a pass-through and the block
  list by its top part, so the model's own forward (masks, pooling, head, loss) runs unchanged.

`verify` checks on a few examples that the cached path gives the uncached logits before training starts.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn

from .models import Anatomy


class PassThroughEmbeddings(nn.Module):
    """Stands in for the embeddings: returns the `inputs_embeds` it is given (the cached hidden states)."""

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        emb = kwargs.get("inputs_embeds")
        if emb is None:
            emb = next((a for a in args if torch.is_tensor(a) and a.is_floating_point()), None)
        if emb is None:
            raise RuntimeError("cached forward called without inputs_embeds")
        return emb


class CachedEncoder(nn.Module):
    """Stands in for the whole frozen encoder: `input_ids` carry example indices into the cache."""

    def __init__(self, first_token: torch.Tensor, pooled: torch.Tensor | None, config: Any):
        super().__init__()
        self.first_token = first_token  # [N, 1, H]
        self.pooled = pooled            # [N, H] or None
        self.config = config

    def forward(self, input_ids: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        idx = input_ids[:, 0].to(self.first_token.device)
        hidden = self.first_token.index_select(0, idx)
        pooled = None if self.pooled is None else self.pooled.index_select(0, idx)
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled)


@dataclass
class FrozenCache:
    """Cached outputs for one split. For "all": first_token/pooled per example; for N: packed states."""

    depth: int | None
    first_token: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    states: list[torch.Tensor] | None = None  # per example [len_i, H]
    nbytes: int = 0
    where: str = "cpu"


@contextmanager
def swapped(obj: nn.Module, attr: str, replacement: nn.Module) -> Iterator[None]:
    original = getattr(obj, attr)
    setattr(obj, attr, replacement)
    try:
        yield
    finally:
        setattr(obj, attr, original)


@contextmanager
def trunk_view(parts: Anatomy, depth: int) -> Iterator[nn.Module]:
    """The encoder with only its bottom `depth` blocks: its output is the state after block `depth`."""
    with swapped(parts.layers_owner, parts.layers_attr, nn.ModuleList(list(parts.layers[:depth]))):
        yield parts.base


@contextmanager
def head_view(model: nn.Module, parts: Anatomy, cache_depth: int | None, first_token: torch.Tensor | None = None,
              pooled: torch.Tensor | None = None) -> Iterator[nn.Module]:
    """The model as it trains on the cache: the frozen part replaced, everything above it unchanged."""
    if cache_depth is None:
        with swapped(model, parts.base_attr, CachedEncoder(first_token, pooled, parts.base.config)):
            yield model
    else:
        top = nn.ModuleList(list(parts.layers[cache_depth:]))
        with swapped(parts.layers_owner, parts.layers_attr, top), \
                swapped(parts.base, _attr_name(parts.base, parts.embeddings), PassThroughEmbeddings()):
            yield model


def _attr_name(owner: nn.Module, child: nn.Module) -> str:
    for name, module in owner.named_children():
        if module is child:
            return name
    raise RuntimeError("embeddings are not a direct child of the encoder")


@torch.no_grad()
def build(parts: Anatomy, depth: int | None, batches: Iterator[dict[str, torch.Tensor]], n_examples: int,
          device: torch.device, store_dtype: torch.dtype, autocast: Any, keep_on_device: bool) -> FrozenCache:
    """Run the frozen trunk once, in eval mode, over `batches` (which carry `index`, `input_ids`,
    `attention_mask`); returns what the rest of the network needs."""
    was_training = parts.base.training
    parts.base.eval()
    target = device if keep_on_device else torch.device("cpu")
    cache = FrozenCache(depth=depth, where=str(target))
    try:
        if depth is None:
            first = pooled = None
            for batch in batches:
                ids = batch["input_ids"].to(device, non_blocking=True)
                mask = batch["attention_mask"].to(device, non_blocking=True)
                with autocast():
                    out = parts.base(input_ids=ids, attention_mask=mask)
                h = out[0][:, :1].to(store_dtype)
                p = getattr(out, "pooler_output", None)
                if first is None:
                    first = torch.empty((n_examples, 1, h.shape[-1]), dtype=store_dtype, device=target)
                    if p is not None:
                        pooled = torch.empty((n_examples, p.shape[-1]), dtype=store_dtype, device=target)
                idx = batch["index"].to(target)
                first.index_copy_(0, idx, h.to(target))
                if p is not None:
                    pooled.index_copy_(0, idx, p.to(store_dtype).to(target))
            cache.first_token, cache.pooled = first, pooled
            cache.nbytes = sum(t.numel() * t.element_size() for t in (first, pooled) if t is not None)
        else:
            states: list[torch.Tensor | None] = [None] * n_examples
            with trunk_view(parts, depth) as trunk:
                for batch in batches:
                    ids = batch["input_ids"].to(device, non_blocking=True)
                    mask = batch["attention_mask"].to(device, non_blocking=True)
                    with autocast():
                        out = trunk(input_ids=ids, attention_mask=mask)
                    h = out[0].to(store_dtype)
                    lengths = batch["attention_mask"].sum(dim=1).tolist()
                    for row, (i, n) in enumerate(zip(batch["index"].tolist(), lengths)):
                        states[i] = h[row, : int(n)].to(target).clone()
            cache.states = states  # type: ignore[assignment]
            cache.nbytes = sum(s.numel() * s.element_size() for s in states if s is not None)
    finally:
        parts.base.train(was_training)
    return cache


def cached_batch(cache: FrozenCache, index: torch.Tensor, labels: torch.Tensor, device: torch.device,
                 pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """A training/eval batch read from the cache (the model's forward arguments)."""
    if cache.depth is None:
        return {"input_ids": index.view(-1, 1).to(device), "labels": labels.to(device)}
    rows = [cache.states[i] for i in index.tolist()]  # type: ignore[index]
    length = max(r.shape[0] for r in rows)
    if pad_to is not None:
        length = max(length, pad_to)
    hidden = rows[0].new_zeros((len(rows), length, rows[0].shape[-1]))
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for j, r in enumerate(rows):
        hidden[j, : r.shape[0]] = r
        mask[j, : r.shape[0]] = 1
    return {"inputs_embeds": hidden.to(device, non_blocking=True), "attention_mask": mask.to(device, non_blocking=True),
            "labels": labels.to(device)}
