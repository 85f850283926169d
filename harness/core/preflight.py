"""Checks run in the parent before anything is written: every data source and model the grid names can
be read, and every trial's settings fit them. A mistake here is one clear line and exit code 2, with no
run folder left behind; what can only fail inside a trial (out of memory, say) becomes a record."""

from __future__ import annotations

import json
from typing import Any, Iterable

from ..grid import Trial
from .data import DataError, load_rows, split_sizes
from .models import (EMBEDDED, RANDOM_SHAPES, ModelError, check_depth, depth_of, embedded_minilm_path,
                     model_folder, random_config)


class PreflightError(Exception):
    """One line: what is wrong, where, and what is expected."""


def max_positions(config: dict[str, Any]) -> int | None:
    """The longest input the model's position embeddings take (RoBERTa-family tables hold 2 more).
    ModernBERT and rotary decoders have no table, but a trained length (max_position_embeddings)."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        n = config.get(key)
        if isinstance(n, int) and not isinstance(n, bool):
            kind = str(config.get("model_type", ""))
            return n - 2 if "roberta" in kind or kind == "camembert" else n
    return None


def model_layers(name: str, trust_remote_code: bool, allow_pickle: bool, revision: str | None = None) -> int | None:
    """The model's block count, checking on the way that it can be found."""
    return depth_of(model_config(name, trust_remote_code, allow_pickle, revision))


def model_config(name: str, trust_remote_code: bool, allow_pickle: bool, revision: str | None = None) -> dict[str, Any]:
    """The model's config as a dict, checking on the way that the model can be loaded: a local folder's or
    hub snapshot's weights have readable safetensors headers, and its architecture has a sequence-
    classification head. A hub id is resolved here, once, in the parent (`hub.resolve`: downloaded unless
    HF_HUB_OFFLINE is set); trials read the cached snapshot."""
    if name.startswith("random:"):
        shape = name.split(":", 1)[1]
        if shape not in RANDOM_SHAPES:
            raise ModelError(f"{name}: unknown random shape; expected one of {', '.join(sorted(RANDOM_SHAPES))}")
        return random_config(shape).to_dict()
    if name.startswith("embedded:"):
        if name not in EMBEDDED:
            raise ModelError(f"{name}: unknown embedded model; expected embedded:minilm-l6")
        path = embedded_minilm_path()
        return json.loads((path / "config.json").read_text())
    path, _ = model_folder(name, revision, allow_pickle, local_only=None, trust_remote_code=trust_remote_code)
    return json.loads((path / "config.json").read_text(encoding="utf-8"))  # checked by model_folder


def setting_place(cfg: Any, flat: str) -> str:
    """Where the user wrote a setting: `[grid] batch_size` when it is swept, else its own section
    (`[train] frozen_layers`, `[model] name` for the flat `model`)."""
    from ..config import flat_names

    if cfg is None or flat in getattr(cfg, "grid", {}):
        return f"[grid] {flat}"
    section, field_name = flat_names().get(flat, ("grid", flat))
    return f"[{section}] {field_name}"


def check(trials: Iterable[Trial], grid_path: str, check_devices: bool = True, cfg: Any = None) -> None:
    """`cfg` (the GridFile) lets a message name the section the user wrote a setting in."""
    trials = list(trials)

    def where(flat: str) -> str:
        return setting_place(cfg, flat)

    for t in trials:
        if t.params["text_column"] == t.params["label_column"]:
            raise PreflightError(f"{grid_path}: {where('text_column')} and {where('label_column')} both name "
                                 f"{t.params['text_column']!r}; expected two different columns (the texts and their labels)")
    data_keys = {(t.data_path or t.params["source"], t.params["text_column"], t.params["label_column"], t.params["split"])
                 for t in trials}
    written = {t.data_path: t.params["source"] for t in trials if t.data_path}
    rows_by_key: dict[tuple[str, str, str, str], int] = {}
    for key in sorted(data_keys):
        try:
            rows = load_rows(*key)
        except DataError as exc:
            how = (f" (a relative path is read from the grid file's folder: {written[key[0]]!r} is {key[0]})"
                   if key[0] in written and written[key[0]] != key[0] else "")
            raise PreflightError(f"{grid_path}: {where('source')}: {exc}{how}") from None
        rows_by_key[key] = len(rows.texts)
    for t in trials:
        p = t.params
        n = rows_by_key[(t.data_path or p["source"], p["text_column"], p["label_column"], p["split"])]
        if p["dataset_size"] > n:
            raise PreflightError(
                f"{grid_path}: {where('dataset_size')}: {p['dataset_size']} is larger than the {n} usable rows of {p['source']}"
            )
        n_train, n_val = split_sizes(p["dataset_size"], p["val_fraction"], p.get("val_rows"))
        if p.get("val_rows") and p["dataset_size"] + n_val > n:
            raise PreflightError(
                f"{grid_path}: {where('val_rows')}: {n_val} validation rows apart from dataset_size "
                f"{p['dataset_size']} need {p['dataset_size'] + n_val} rows; {p['source']} has {n} usable rows"
            )
        if n_train < 1:
            raise PreflightError(
                f"{grid_path}: {where('val_fraction')}: {p['val_fraction']} of dataset_size {p['dataset_size']} is "
                f"{int(n_val)} validation rows, which leaves no training rows; expected a fraction such as 0.1 "
                f"(a fraction of the rows, not a percentage)"
            )
        if n_train < p["batch_size"]:
            after = (f" after val_fraction {p['val_fraction']} took {int(n_val)} for validation"
                     if p["val_fraction"] > 0.5 and not p.get("val_rows") else "")
            raise PreflightError(
                f"{grid_path}: {where('batch_size')}: {p['batch_size']} is larger than the {n_train} "
                f"training rows of dataset_size {p['dataset_size']}{after} (batches drop the last partial batch, "
                "so none would run)"
            )
    configs: dict[tuple[str, bool, bool, str | None], dict[str, Any]] = {}
    for t in trials:
        key = (t.params["model"], t.params["trust_remote_code"], t.params["allow_pickle"], t.params.get("revision"))
        if key not in configs:
            try:
                configs[key] = model_config(*key)
            except ModelError as exc:
                raise PreflightError(f"{grid_path}: {where('model')}: {exc}") from None
        n_pos = max_positions(configs[key])
        if n_pos is not None and t.params["max_length"] > n_pos:
            raise PreflightError(
                f"{grid_path}: {where('max_length')}: {t.params['max_length']} but {t.params['model']} has "
                f"{n_pos} positions; expected at most {n_pos}"
            )
        fl = t.params["frozen_layers"]
        try:
            check_depth(fl, configs[key], t.params["model"])
        except ModelError as exc:
            n_layers = depth_of(configs[key])
            if fl != "all" and n_layers is not None and int(fl) > n_layers:
                raise PreflightError(
                    f"{grid_path}: {where('frozen_layers')}: {fl} but {t.params['model']} has {n_layers} layers; "
                    f"expected 0..{n_layers} or \"all\""
                ) from None
            raise PreflightError(f"{grid_path}: {where('frozen_layers')}: {exc}") from None
    if check_devices:
        cuda = sorted({t.params["device"] for t in trials if t.params["device"].startswith("cuda")})
        if cuda:
            import torch

            if not torch.cuda.is_available():
                raise PreflightError(f"{grid_path}: {where('device')}: {cuda[0]!r} but CUDA is not available on this machine")
            count = torch.cuda.device_count()
            for d in cuda:
                if ":" in d and int(d.split(":")[1]) >= count:
                    raise PreflightError(f"{grid_path}: {where('device')}: {d!r} but this machine has {count} CUDA device(s)")
