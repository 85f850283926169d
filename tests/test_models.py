"""Model names and freezing: counts for BERT, DistilBERT and RoBERTa shapes, found generically."""

from __future__ import annotations

import pytest

from harness.core.models import ModelError, anatomy, freeze, load_model


def test_distilbert_base_all_frozen_is_the_labs_592130():
    model = load_model("random:distilbert-base", 2).model
    trainable, total = freeze(model, "all")
    assert trainable == 592_130
    # the lab's own rule: every parameter whose name lacks "classifier" is frozen
    lab_rule = sum(p.numel() for n, p in model.named_parameters() if "classifier" in n)
    assert trainable == lab_rule
    assert 66_000_000 < total < 67_500_000


@pytest.mark.parametrize("name, layers", [("random:bert-tiny", 2), ("random:distilbert-tiny", 2), ("random:roberta-tiny", 2)])
def test_freezing_by_depth_is_generic(name, layers):
    model = load_model(name, 3).model
    parts = anatomy(model)
    assert parts.num_layers == layers
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for p in parts.embeddings.parameters())
    per_layer = [sum(p.numel() for p in layer.parameters()) for layer in parts.layers]
    assert freeze(model, 0) == (total, total)
    assert freeze(model, 1) == (total - emb - per_layer[0], total)
    assert freeze(model, 2) == (total - emb - sum(per_layer), total)
    trainable_all, _ = freeze(model, "all")
    head = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(model.base_model_prefix + "."))
    assert trainable_all == head
    with pytest.raises(ModelError, match="has 2 layers"):
        freeze(model, 3)


def test_unknown_names_are_refused_clearly():
    with pytest.raises(ModelError, match="unknown random shape"):
        load_model("random:gpt-17", 2)
    with pytest.raises(ModelError, match="unknown embedded model"):
        load_model("embedded:nope", 2)


def test_local_folder_round_trip_and_pickle_refusal(tmp_path):
    loaded = load_model("random:bert-tiny", 2)
    folder = tmp_path / "m"
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    again = load_model(str(folder), 2).model
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in loaded.model.parameters())
    for f in folder.glob("*.safetensors"):
        f.unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelError, match="allow_pickle"):
        load_model(str(folder), 2)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(ModelError, match="no weights"):
        load_model(str(folder), 2)


def test_embedded_minilm_loads_offline_with_a_mean_pooled_head():
    model = load_model("embedded:minilm-l6", 2).model
    trainable, total = freeze(model, "all")
    assert trainable == 384 * 2 + 2
    assert anatomy(model).num_layers == 6
