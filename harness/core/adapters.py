"""Low-rank adapters (LoRA, through peft) beside frozen depth.

`adapter = "lora"` freezes every weight of the encoder and adds trainable low-rank updates (W + B A x,
scaled by alpha / r) to chosen Linear layers of the blocks ABOVE `frozen_layers`: 0 puts them in every
block, N in blocks N.., and "all" leaves no block for them (only the head trains, as without an adapter).
The classification head (everything outside the encoder) always trains in full.

Because the embeddings and the bottom N blocks carry neither weights that train nor adapters, they still
compute the same function every epoch, so `fast`'s frozen-prefix cache (core/cache.py) runs them once and
the adapted top blocks train on the cached states: nothing else needs to know about adapters.

The adapters are put in place with `peft.inject_adapter_in_model` on the transformers model itself (no
PeftModel wrapper), so the model keeps its layout (`core.models.anatomy`, the cache's views, the FLOP
count all see the same blocks); peft is given the explicit module names of the adapted blocks.
Targets: `lora_targets`, or peft's default for the family (BERT and RoBERTa: query, value). Where peft has
no default (DistilBERT), the block's query and value projections found by name: the same choice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import nn

from .models import Anatomy, ModelError, anatomy, frozen_depth

# Query/value projections by family naming, for families peft has no default for.
QV_NAMES = (("query", "value"), ("q_lin", "v_lin"), ("q_proj", "v_proj"))


@dataclass
class AdapterInfo:
    """What was trained, for the record (`adapter`)."""

    kind: str
    r: int
    alpha: float
    dropout: float
    targets: list[str]       # module names within a block that got an adapter
    targets_from: str        # where the targets came from
    blocks: list[int]        # indices of the adapted blocks
    modules: int             # number of adapted Linear layers
    adapter_params: int      # parameters of the adapters alone
    head_params: int         # parameters of the head (trained in full)
    peft_version: str
    note: str | None = None

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ModelError("adapter = \"lora\" needs the peft library, which is not installed (pip install 'peft>=0.18')") from None
    return peft


def _target_list(spec: Any) -> list[str] | None:
    if spec is None:
        return None
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    return [n.strip() for n in names]


def _block_linears(block: nn.Module) -> list[str]:
    return [name for name, m in block.named_modules() if isinstance(m, nn.Linear) and name]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def resolve_targets(model: nn.Module, parts: Anatomy, spec: Any) -> tuple[list[str], str]:
    """(target names, where they came from): the grid's `lora_targets`, or peft's default for the family."""
    linears = _block_linears(parts.layers[0])
    given = _target_list(spec)
    if given == ["all-linear"]:
        return ["all-linear"], "lora_targets"
    if given is not None:
        for t in given:
            if not any(_matches(n, t) for n in linears):
                leaves = sorted({n.rsplit(".", 1)[-1] for n in linears})
                raise ModelError(f"lora_targets: no Linear layer named {t!r} in a block of "
                                 f"{type(model).__name__}; expected some of {', '.join(leaves)} or \"all-linear\"")
        return given, "lora_targets"
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = getattr(model.config, "model_type", None)
    default = DEFAULTS.get(model_type)
    if isinstance(default, list) and all(any(_matches(n, t) for n in linears) for t in default):
        return list(default), f"peft's default for {model_type}"
    for pair in QV_NAMES:
        if all(any(_matches(n, t) for n in linears) for t in pair):
            return list(pair), f"query and value projections (peft has no default for {model_type})"
    raise ModelError(f"{type(model).__name__}: peft has no default LoRA targets for model type {model_type!r}; "
                     "set [train] lora_targets (module names in a block, or \"all-linear\")")


def head_parameters(model: nn.Module, parts: Anatomy) -> list[nn.Parameter]:
    in_base = {id(p) for p in parts.base.parameters()}
    return [p for p in model.parameters() if id(p) not in in_base]


def apply_adapter(model: nn.Module, params: dict[str, Any], model_name: str = "model") -> AdapterInfo | None:
    """Put the grid's adapter into `model` in place and set what trains (the adapters and the head).
    None when the trial has no adapter (`freeze` alone decides what trains)."""
    kind = params.get("adapter") or "none"
    if kind == "none":
        return None
    if kind != "lora":
        raise ModelError(f"adapter = {kind!r}: expected \"none\" or \"lora\"")
    peft = _peft()
    parts = anatomy(model)
    depth = frozen_depth(params["frozen_layers"], parts.num_layers, model_name)
    first = parts.num_layers if depth is None else depth
    blocks = list(range(first, parts.num_layers))
    targets, source = resolve_targets(model, parts, params.get("lora_targets"))
    r, alpha, dropout = int(params["lora_r"]), float(params["lora_alpha"]), float(params["lora_dropout"])
    names: list[str] = []
    block_names = {id(b): i for i, b in enumerate(parts.layers)}
    for full, module in model.named_modules():
        if id(module) in block_names and block_names[id(module)] in blocks:
            names += [f"{full}.{n}" for n in _block_linears(module)
                      if targets == ["all-linear"] or any(_matches(n, t) for t in targets)]
    for p in model.parameters():
        p.requires_grad_(False)
    head = head_parameters(model, parts)
    note = None
    if names:
        config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none")
        peft.inject_adapter_in_model(config, model)  # freezes the base, adapters trainable
    else:
        note = (f"frozen_layers = {params['frozen_layers']} leaves no block above the frozen part for adapters: "
                "only the head trains, as without an adapter")
    for p in head:
        p.requires_grad_(True)
    adapter_params = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    return AdapterInfo(kind="lora", r=r, alpha=alpha, dropout=dropout, targets=targets, targets_from=source,
                       blocks=blocks, modules=len(names), adapter_params=adapter_params,
                       head_params=sum(p.numel() for p in head), peft_version=peft.__version__, note=note)


def counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, adapters included."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def carries_adapters(model: nn.Module) -> bool:
    """Whether peft's adapters are in the model (their parameters are named lora_A / lora_B)."""
    return any("lora_" in n for n, _ in model.named_parameters())


def adapted_blocks(model: nn.Module) -> dict[int, list[Any]]:
    """peft's adapter layers by block index (empty: the model carries no adapters)."""
    parts = anatomy(model)
    out: dict[int, list[Any]] = {}
    for i, block in enumerate(parts.layers):
        layers = [m for m in block.modules() if hasattr(m, "enable_adapters") and hasattr(m, "lora_A")]
        if layers:
            out[i] = layers
    return out


def set_adapted_depth(model: nn.Module, frozen_layers: Any, model_name: str = "model") -> None:
    """For the planner's probes, which run several frozen depths on one loaded model: a model that
    `apply_adapter` gave adapters in every block (frozen_layers = 0) made to train as `apply_adapter` would
    have made it at `frozen_layers`: every base weight frozen, the adapters of the blocks below the depth
    switched off (peft's layer then runs its base weight alone, the ops an unadapted Linear runs) and frozen,
    those above on and trained, the head trained. Only the adapters' own parameters, a few hundred KB, differ."""
    parts = anatomy(model)
    depth = frozen_depth(frozen_layers, parts.num_layers, model_name)
    first = parts.num_layers if depth is None else depth
    for p in model.parameters():
        p.requires_grad_(False)
    for i, layers in adapted_blocks(model).items():
        for layer in layers:
            layer.enable_adapters(i >= first)  # requires_grad follows (peft)
    for p in head_parameters(model, parts):
        p.requires_grad_(True)
