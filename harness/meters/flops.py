"""FLOPs of the work a trial actually did, counted analytically, and model FLOPs utilisation (MFU).

What is counted (matrix multiplications only, 2 FLOPs per multiply-add; softmax, layer norms, activations,
dropout, embedding look-ups and the optimiser step are left out, as in the usual MFU convention):

- each transformer block, per token: 2 x (sum of in x out of its Linear layers: Q, K, V, output, FFN), plus
  attention scores and the weighted sum, 4 x attention width x sequence length (all on PADDED tokens:
  padding is computed like any token);
- per example: the encoder's Linear layers outside the blocks (BERT's pooler) and the classifier head.

Per pass over the data: layers that are trained run forward and backward, about 3x their forward; frozen
layers run forward only, and no gradient flows through them. With the frozen-prefix cache the frozen part
runs ONCE (the `cache` phase, over the training and validation sets) and each epoch runs only what is
above it; without the cache the frozen part runs forward every epoch. Evaluation is a forward pass of what
runs at evaluation. Every pass is counted batch by batch, from the batches the Trainer reports it ran
(`core.train.WorkReport`: examples and padded length per batch, the cache's token-budgeted batches
included); the model's shape comes from `core.models.encoder_shape`. Nothing here re-simulates training.

Backward is 2x forward (gradients for the inputs and for the weights), except that the first trained block
above frozen ones (or above the cache) needs no gradient for its input: its Q, K, V projections' input
gradients are not counted. Checked against `torch.utils.flop_counter.FlopCounterMode` in tests/test_meters.py.

MFU = FLOPs / (seconds of the cache, training and evaluation phases) / the device's peak FLOP/s for the
trial's precision, from `PEAK_TFLOPS` (dense, no sparsity; overridable with `[cost] peak_tflops`).
The peak of a CPU is unknown unless given, so a CPU trial's MFU is null with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ..config import PEAK_TFLOPS, PRECISIONS  # noqa: F401 (PRECISIONS re-exported)
from .cost import match_device

BACKWARD_FACTOR = 2.0  # backward ~ 2x forward (gradients for inputs and for weights)


@dataclass(frozen=True)
class EncoderShape:
    """The matmul sizes of an encoder classifier, read off its modules."""

    layer_params: tuple[int, ...]  # per block: sum of in x out of its Linear layers
    attn_width: int                # width of Q and K in a block (heads x head size)
    pooler_params: int = 0         # Linear layers in the encoder outside the blocks, applied per example
    head_params: int = 0           # Linear layers outside the encoder (the classifier head), per example
    input_params: tuple[int, ...] = ()  # per block: in x out of the Linear layers that read the block's input (Q, K, V)

    @property
    def num_layers(self) -> int:
        return len(self.layer_params)


@dataclass(frozen=True)
class Work:
    """One pass over data: examples, padded tokens, and the sum over examples of padded length squared."""

    samples: int
    tokens: int
    tokens_sq: float

    @classmethod
    def uniform(cls, samples: int, tokens: int) -> "Work":
        """A pass known only by its totals: every example taken at the mean padded length."""
        return cls(samples, tokens, tokens * tokens / samples if samples else 0.0)

    @classmethod
    def from_batches(cls, batches: Iterable[tuple[int, int]]) -> "Work":
        """From (examples, padded length) per batch."""
        s = t = 0
        sq = 0.0
        for n, length in batches:
            s += n
            t += n * length
            sq += n * length * length
        return cls(s, t, sq)


def forward_flops(shape: EncoderShape, work: Work, layers: range, pooler: bool, head: bool) -> float:
    """Forward FLOPs of blocks `layers` (plus the pooler and/or head) over one pass of `work`."""
    total = 0.0
    for i in layers:
        total += 2.0 * shape.layer_params[i] * work.tokens + 4.0 * shape.attn_width * work.tokens_sq
    if pooler:
        total += 2.0 * shape.pooler_params * work.samples
    if head:
        total += 2.0 * shape.head_params * work.samples
    return total


@dataclass
class FlopCount:
    total: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, flops: float) -> None:
        self.parts[name] = self.parts.get(name, 0.0) + flops
        self.total += flops


def _no_input_grad(shape: EncoderShape, block: int, work: Work) -> float:
    """Backward FLOPs not spent on the input gradient of `block` when nothing below it is trained."""
    if block >= shape.num_layers or block >= len(shape.input_params):
        return 0.0
    return 2.0 * shape.input_params[block] * work.tokens


def trial_flops(shape: EncoderShape, depth: int | None, cached: bool, train: list[Work], evals: list[Work],
                cache: Work | None = None) -> FlopCount:
    """FLOPs of a trial. `depth`: frozen bottom blocks (None: the whole encoder, "all"); `cached`: the
    frozen part ran once over `cache` instead of every epoch; `train`/`evals`: one Work per pass done."""
    n = shape.num_layers
    d = n if depth is None else min(int(depth), n)
    frozen_all = depth is None
    bwd = 1.0 + BACKWARD_FACTOR
    out = FlopCount()
    if cached and cache is not None and (frozen_all or d > 0):
        out.add("cache", forward_flops(shape, cache, range(0, d), pooler=frozen_all, head=False))
    for w in train:
        if cached and (frozen_all or d > 0):
            if frozen_all:  # the head reads the cached first-token / pooled states
                out.add("train", bwd * forward_flops(shape, w, range(0), pooler=False, head=True))
            else:
                out.add("train", bwd * forward_flops(shape, w, range(d, n), pooler=True, head=True)
                        - _no_input_grad(shape, d, w))
        else:
            out.add("train", forward_flops(shape, w, range(0, d), pooler=frozen_all, head=False))
            out.add("train", bwd * forward_flops(shape, w, range(d, n), pooler=not frozen_all, head=True)
                    - (_no_input_grad(shape, d, w) if d > 0 else 0.0))
    for w in evals:
        if cached and (frozen_all or d > 0):
            out.add("eval", forward_flops(shape, w, range(d, n) if not frozen_all else range(0),
                                          pooler=not frozen_all, head=True))
        else:
            out.add("eval", forward_flops(shape, w, range(0, n), pooler=True, head=True))
    return out


# --------------------------------------------------------------------------------------------------
# Peak and MFU
# --------------------------------------------------------------------------------------------------
def peak_table(overrides: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, dict[str, float]]:
    table = {k: dict(v) for k, v in PEAK_TFLOPS.items()}
    for dev, per in (overrides or {}).items():
        table.setdefault(dev.lower(), {}).update({p.lower(): float(v) for p, v in per.items()})
    return table


def matmul_precision(precision: str, device: str) -> str:
    """The peak column that applies: fp32 matmuls on CUDA use TF32 when torch allows it."""
    if precision != "fp32" or not device.startswith("cuda"):
        return precision
    try:
        import torch

        if torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest":
            return "tf32"
    except Exception:
        pass
    return "fp32"


def mfu(flops: float | None, seconds: float | None, device_name: str | None, device: str, precision: str,
        overrides: Mapping[str, Mapping[str, float]] | None = None) -> tuple[float | None, str]:
    """(MFU or None, mfu_note)."""
    if flops is None or not seconds or seconds <= 0:
        return None, "no FLOPs or no compute time measured"
    table = peak_table(overrides)
    key = match_device(device_name, device, table)
    column = matmul_precision(precision, device)
    if key is None:
        if not device.startswith("cuda"):
            return None, ("peak FLOP/s unknown for this CPU (give it as [cost] peak_tflops = "
                          "{cpu = {fp32 = <TFLOP/s>}} to get an MFU)")
        return None, (f"peak FLOP/s unknown for GPU {device_name!r} (name it in [cost] add_devices "
                      "and give its peak in [cost] peak_tflops)")
    per = table[key]
    if column not in per and column == "tf32" and "fp32" in per:
        column = "fp32"  # no TF32 units (T4): fp32 matmuls run at the fp32 rate
    if column not in per:
        return None, f"no {column} peak for {key} in the table (set [cost] peak_tflops = {{{key} = {{{column} = ...}}}})"
    peak = per[column] * 1e12
    value = flops / seconds / peak
    return float(f"{value:.4g}"), (f"{flops:.3g} FLOPs (matmuls, counted analytically) / {seconds:.2f} s of cache, training "
                             f"and evaluation / {key} {column} peak {per[column]:g} TFLOP/s")
