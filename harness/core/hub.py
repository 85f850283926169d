"""Hub models: resolved once in the parent, read offline by every trial.

The pre-flight check calls `resolve(name, revision, allow_pickle)` for each hub id a grid names: the real
`huggingface_hub.snapshot_download` fetches what a trial needs (config, tokenizer files, safetensors weights;
pickled `.bin` weights only when the grid allows pickles and the repo has no safetensors) into the standard
cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`), with huggingface_hub's progress
bar. With `HF_HUB_OFFLINE=1` nothing is fetched: the cached snapshot is used, and a model that is not cached
is one line naming the model and the command that fetches it ahead of time. Trials call `resolve(...,
local_only=True)`: the same snapshot folder, read from the cache without any network. Data sets named
by hub id go the same way (`resolve_dataset`): the parent fetches the repo's files, `datasets.load_dataset`
reads that local folder (preparing its arrow cache once), and trials read the same folder offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelError

# What a trial reads of a model repo: configs, tokenizer files, weights. Top-level files only (no onnx/,
# openvino/ or other export folders).
CONFIG_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken", "tokenizer*", "vocab*", "merges*", "spiece*"]
SAFE_WEIGHTS = ["*.safetensors"]
PICKLED_WEIGHTS = ["*.bin"]
SUBFOLDERS = ["*/*"]


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline() -> bool:
    """HF_HUB_OFFLINE as the user set it now (huggingface_hub reads it once, at import)."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE"))


def cache_dir() -> Path:
    """The hub cache this process uses, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def fetch_command(name: str, revision: str | None, repo_type: str = "model") -> str:
    rev = f" --revision {revision}" if revision else ""
    if repo_type == "dataset":
        return f"hf download {name}{rev} --repo-type dataset"
    return f"hf download {name}{rev} --include '*.json' '*.safetensors' '*.txt' '*.model'"


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


class HubError(Exception):
    """One line: the repo, why it cannot be had, how to fetch it ahead of time."""


def snapshot(name: str, repo_type: str = "model", revision: str | None = None, patterns: list[str] | None = None,
             ignore: list[str] | None = None, local_only: bool | None = None) -> Path:
    """`huggingface_hub.snapshot_download` of `patterns`, or of the cached snapshot only (`local_only`, or
    HF_HUB_OFFLINE when `local_only` is None); its failures as one HubError line."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    only_local = offline() if local_only is None else local_only
    cache = cache_dir()
    where = f"{name}" + (f" (revision {revision})" if revision else "")
    fetch = fetch_command(name, revision, repo_type)
    if not only_local:  # a download shows huggingface_hub's progress bar (unless HF_HUB_DISABLE_PROGRESS_BARS)
        from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

        if are_progress_bars_disabled() and not _truthy(os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")):
            enable_progress_bars()
    try:
        return Path(snapshot_download(name, repo_type=repo_type, revision=revision, cache_dir=str(cache),
                                      local_files_only=only_local, allow_patterns=patterns, ignore_patterns=ignore))
    except HFValidationError:
        raise HubError(f"{name}: not a local path and not a valid hub id (expected org/name)") from None
    except GatedRepoError:
        raise HubError(f"{where}: gated on the hub; accept its terms there and log in (hf auth login)") from None
    except RevisionNotFoundError:
        raise HubError(f"{where}: the hub has no such revision; expected a branch, tag or commit of {name}") from None
    except RepositoryNotFoundError:
        raise HubError(f"{name}: no such {repo_type} on the hub (a typo, or private: log in with hf auth login)") from None
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as exc:
        if only_local:
            reason = "HF_HUB_OFFLINE is set" if local_only is None else "trials read the cache only"
            raise HubError(f"{where}: not in the local hub cache {cache} and {reason}; fetch it ahead of time "
                           f"with: {fetch}") from None
        first = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise HubError(f"{where}: cannot be downloaded and is not in the local hub cache {cache} ({first}); "
                       f"fetch it where there is a network with: {fetch}") from None


def resolve(name: str, revision: str | None = None, allow_pickle: bool = False, local_only: bool | None = None) -> Path:
    """The local snapshot folder of hub model `name` at `revision` (default: the repo's main branch).

    `local_only=None` follows HF_HUB_OFFLINE (the parent's pre-flight check); True never touches the network
    (a trial). Raises ModelError with one line when the model cannot be had."""
    where = f"{name}" + (f" (revision {revision})" if revision else "")
    only_local = offline() if local_only is None else local_only
    try:
        folder = snapshot(name, "model", revision, CONFIG_FILES + SAFE_WEIGHTS, SUBFOLDERS, local_only)
        if not any(folder.glob("*.safetensors")) and allow_pickle and not only_local:
            folder = snapshot(name, "model", revision, CONFIG_FILES + PICKLED_WEIGHTS, SUBFOLDERS, local_only)
    except HubError as exc:
        raise ModelError(str(exc)) from None
    if not (folder / "config.json").is_file():
        raise ModelError(f"{where}: the hub cache entry {folder} has no config.json; expected a transformers model "
                         f"(fetch it again with: {fetch_command(name, revision)})")
    if not _has_weights(folder):
        raise ModelError(f"{where}: the hub cache entry {folder} has a config but no weights (model.safetensors); "
                         f"fetch them with: {fetch_command(name, revision)}")
    return folder


def resolve_dataset(name: str, local_only: bool | None = None) -> Path:
    """The local snapshot folder of hub data set `name` (its data files and README's configs), which
    `datasets.load_dataset` then reads as a local folder: prepared once by the parent's pre-flight check,
    read from the same folder (and the prepared arrow cache) by every trial, offline."""
    return snapshot(name, "dataset", None, None, None, local_only)
