"""Hub models resolved once in the parent, read offline by trials, against a local cache in hub layout.

No network here: HF_HUB_OFFLINE=1 and HF_HOME point at a temporary folder that `hub_helpers.hub_entry` fills
the way huggingface_hub does (refs, snapshots of symlinks, blobs). Covered: a complete snapshot resolves and
loads; a pinned revision (a tag and a commit) picks its own snapshot; a whole run reads a hub id end to end;
the models that cannot be loaded (not cached, a config and no weights, garbage or truncated safetensors, a
vision model) are each one line and exit 2 before any run folder is written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grid_helpers import tiny_grid
from harness.cli import main
from harness.core.hub import resolve
from harness.core.models import ModelError, load_model
from hub_helpers import VIT_CONFIG, hub_entry, safetensors_bytes, tiny_model_files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty hub cache under HF_HOME, offline."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (home / "hub").mkdir(parents=True)
    return home / "hub"


def test_a_cached_snapshot_resolves_and_loads_offline(hub):
    commit = hub_entry(hub, "org/tiny-bert", tiny_model_files())
    folder = resolve("org/tiny-bert")
    assert folder == hub / "models--org--tiny-bert" / "snapshots" / commit
    loaded = load_model("org/tiny-bert", 2)
    assert loaded.source == f"hub:org/tiny-bert@{commit}"
    assert sum(p.numel() for p in loaded.model.parameters()) > 0


def test_a_pinned_revision_picks_its_own_snapshot(hub):
    files = tiny_model_files()
    main_commit = hub_entry(hub, "org/tiny-bert", files)
    changed = json.loads(files["config.json"])
    changed["num_hidden_layers"] = 1
    v1 = hub_entry(hub, "org/tiny-bert", {**files, "config.json": json.dumps(changed).encode()}, ref="v1",
                   commit="1" * 40)
    assert resolve("org/tiny-bert").name == main_commit
    assert resolve("org/tiny-bert", revision="v1").name == v1
    assert resolve("org/tiny-bert", revision=v1).name == v1  # a commit, as a run that must repeat pins it
    assert len(load_model("org/tiny-bert", 2, revision="v1").model.bert.encoder.layer) == 1
    with pytest.raises(ModelError, match="revision nope.*not in the local hub cache"):
        resolve("org/tiny-bert", revision="nope")


def test_trials_never_touch_the_network(hub, monkeypatch):
    """Even with HF_HUB_OFFLINE unset, a trial's resolve (local_only=True) reads the cache or fails fast."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelError, match="trials read the cache only"):
        resolve("org/absent", local_only=True)


@pytest.mark.slow  # huggingface_hub retries a refused connection for a minute or so
def test_online_but_unreachable_uses_the_cache_or_says_how_to_fetch(hub, tmp_path):
    """HF_HUB_OFFLINE unset and the hub unreachable (HF_ENDPOINT at a closed port): a cached model is still
    used; an uncached one is one line that says it cannot be downloaded and how to fetch it elsewhere."""
    hub_entry(hub, "org/tiny-bert", tiny_model_files())
    code = ("from harness.core.hub import resolve\n"
            "print(resolve('org/tiny-bert').parent.parent.name)\n"
            "try:\n    resolve('org/absent')\nexcept Exception as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**env, "PYTHONPATH": str(REPO), "HF_ENDPOINT": "http://127.0.0.1:9"})
    cached, absent = proc.stdout.strip().splitlines()
    assert cached == "models--org--tiny-bert", proc.stderr
    assert "org/absent: cannot be downloaded" in absent and "hf download org/absent" in absent


def test_a_grid_runs_a_hub_model_end_to_end(hub, tmp_path):
    hub_entry(hub, "org/tiny-bert", tiny_model_files())
    grid = tiny_grid(tmp_path, model__name="org/tiny-bert", train__epochs=2, grid__frozen_layers=[1])
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(grid), "--out", str(out), "--no-report"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert rec["status"] == "ok", rec.get("error")
    assert len(rec["epochs"]) == 2


def test_a_hub_data_set_is_read_from_its_cached_snapshot(hub, monkeypatch, tmp_path):
    """`[data] source = "org/reviews"`: the snapshot in the hub cache, read by datasets.load_dataset as a
    local folder (the parent's pre-flight), then by a trial with the cache only (offline=True)."""
    from harness.core.data import DataError, load_rows

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    rows = "text,label\n" + "".join(f"review number {i},{i % 2}\n" for i in range(40))
    hub_entry(hub, "org/reviews", {"train.csv": rows.encode()}, repo_type="dataset")
    parent = load_rows("org/reviews", "text", "label", "train")
    monkeypatch.delenv("HF_HUB_OFFLINE")  # a trial reads the cache whatever the environment says
    child = load_rows("org/reviews", "text", "label", "train", offline=True)
    assert parent.texts == child.texts and len(child.texts) == 40
    with pytest.raises(DataError, match="org/absent: not in the local hub cache .* --repo-type dataset"):
        load_rows("org/absent", "text", "label", "train", offline=True)


# --------------------------------------------------------------------------------------------------
# Models that cannot be loaded: one line, exit 2, nothing written (issue 15, item 7)
# --------------------------------------------------------------------------------------------------
def _files(**over: bytes | None) -> dict[str, bytes]:
    files = tiny_model_files()
    for name, data in over.items():
        name = name.replace("__", ".")
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return files


def _truncated() -> bytes:
    weights = tiny_model_files()["model.safetensors"]
    return weights[: len(weights) // 2]


UNLOADABLE = {
    # name: (files of the cache entry or None for no entry, needles of the one line)
    "not cached, offline": (None, ["not in the local hub cache", "HF_HUB_OFFLINE is set",
                                   "hf download org/tiny --include"]),
    "a config and no weights": (_files(model__safetensors=None), ["no weights", "model.safetensors", "hf download org/tiny"]),
    "no config": (_files(config__json=None), ["no config.json"]),
    "garbage safetensors": (_files(model__safetensors=b"<html>rate limited</html>" * 3),
                            ["model.safetensors is not a readable safetensors file"]),
    "truncated safetensors": (_files(model__safetensors=_truncated),
                              ["model.safetensors is not a readable safetensors file"]),
    "empty safetensors": (_files(model__safetensors=b""), ["model.safetensors is not a readable safetensors file"]),
    "a vision model": ({"config.json": VIT_CONFIG.encode(), "model.safetensors": safetensors_bytes},
                       ["model type 'vit'", "ViTForImageClassification", "no sequence-classification head"]),
    "config without model_type": (_files(config__json=b'{"hidden_size": 8}'), ["has no model_type"]),
    "a shard the index names is missing": (
        _files(model__safetensors=None,
               **{"model__safetensors__index__json": json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors"}}).encode(),
                  "model-00002-of-00002__safetensors": safetensors_bytes}),
        ["names model-00001-of-00002.safetensors, which is missing"]),
}


@pytest.mark.parametrize("case", list(UNLOADABLE))
@pytest.mark.parametrize("where", ["hub", "folder"])
def test_an_unloadable_model_is_one_line_before_any_folder(case, where, hub, tmp_path, monkeypatch, capsys):
    files, needles = UNLOADABLE[case]
    if files is not None:
        files = {k: (v() if callable(v) else v) for k, v in files.items()}
    if where == "hub":
        name = "org/tiny"
        if files is not None:
            hub_entry(hub, name, files)
    else:
        if files is None:
            pytest.skip("a folder that is not there is another case (no such model)")
        folder = tmp_path / "model"
        folder.mkdir()
        for fname, data in files.items():
            (folder / fname).write_bytes(data)
        name = str(folder)
        needles = [n for n in needles if "hf download" not in n]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    grid = tiny_grid(tmp_path, model__name=name)
    out = tmp_path / "out"
    code = main(["run", str(grid), "--out", str(out), "--no-report"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    for needle in ["[model] name", name, *needles]:
        assert needle in lines[0], (needle, lines[0])
    assert not out.exists()
    assert list(work.iterdir()) == []
