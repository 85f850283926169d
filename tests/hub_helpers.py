"""A local hub cache laid out exactly as huggingface_hub lays it out (there is no network in tests):

    <cache>/models--<org>--<name>/blobs/<sha256 of the file>        the file's bytes
    <cache>/models--<org>--<name>/snapshots/<commit>/<filename>      a relative symlink to ../../blobs/<sha256>
    <cache>/models--<org>--<name>/refs/<branch or tag>               the commit, no newline

`tiny_model_files()` gives the files of a saved `random:bert-tiny` (config, tokenizer, model.safetensors);
`safetensors_bytes()` a small valid safetensors file; `VIT_CONFIG` a vision model's config.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

VIT_CONFIG = json.dumps({"model_type": "vit", "architectures": ["ViTForImageClassification"], "hidden_size": 32,
                         "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "image_size": 32,
                         "patch_size": 16})


def hub_entry(cache: Path, repo: str, files: dict[str, bytes], ref: str = "main", commit: str | None = None,
              repo_type: str = "model") -> str:
    """Add one snapshot of `repo` with `files` to the hub cache at `cache`; `ref` points at it. Returns the commit."""
    folder = cache / f"{repo_type}s--{repo.replace('/', '--')}"
    if commit is None:
        commit = hashlib.sha1(json.dumps(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in files.items()))
                              .encode()).hexdigest()
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        (folder / "blobs" / sha).write_bytes(data)
        link = snap / name
        if not link.exists():
            link.symlink_to(Path("..") / ".." / "blobs" / sha)
    (folder / "refs" / ref).write_text(commit)
    return commit


@lru_cache(maxsize=1)
def _tiny_model_files() -> tuple[tuple[str, bytes], ...]:
    import tempfile

    from harness.core.models import load_model

    loaded = load_model("random:bert-tiny", 2)
    with tempfile.TemporaryDirectory() as tmp:
        loaded.model.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        return tuple((p.name, p.read_bytes()) for p in sorted(Path(tmp).iterdir()) if p.is_file())


def tiny_model_files() -> dict[str, bytes]:
    return dict(_tiny_model_files())


def safetensors_bytes() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"w": torch.zeros(4, 4)})
