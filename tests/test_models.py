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


def test_embedded_minilm_is_its_checkpoint_encoder_pooled_by_the_masked_mean():
    """The loaded encoder itself reads the sentence (no second copy built from its state): every encoder weight
    equals the checkpoint's, the unused BERT pooler is gone, and the pooled output is the attention-masked mean."""
    import torch
    from safetensors.torch import load_file

    from harness.core.models import embedded_minilm_path

    model = load_model("embedded:minilm-l6", 2).model.eval()
    assert model.bert.pooler is None and not any(k.startswith("bert.pooler") for k in model.state_dict())
    saved = load_file(str(embedded_minilm_path() / "model.safetensors"))
    saved = {k.removeprefix("bert."): v for k, v in saved.items()}
    for name, tensor in model.bert.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    ids = torch.tensor([[101, 2023, 2003, 2204, 102, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        out = model.bert(input_ids=ids, attention_mask=mask)
    expected = out.last_hidden_state[:, :5].mean(dim=1)
    assert torch.allclose(out.pooler_output, expected, atol=1e-6)


def test_an_embedded_checkpoint_without_its_encoder_is_refused(monkeypatch, tmp_path):
    """A checkpoint that lacks encoder weights (from_pretrained would initialise them at random) is refused."""
    import shutil

    from safetensors.torch import load_file, save_file

    from harness.core import models

    src = models.embedded_minilm_path()
    for f in src.iterdir():
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    weights = load_file(str(src / "model.safetensors"))
    dropped = next(k for k in weights if "layer.5" in k)
    save_file({k: v for k, v in weights.items() if k != dropped}, str(tmp_path / "model.safetensors"))
    monkeypatch.setattr(models, "embedded_minilm_path", lambda: tmp_path)
    with pytest.raises(ModelError, match="unexpected checkpoint layout"):
        load_model("embedded:minilm-l6", 2)
