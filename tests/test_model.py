import json
import shutil

import numpy as np
import pytest

from conftest import LABELS, build_classifier_folder, make_rows
from infer import Classifier, ModelFolderError
from infer.text import TextSettings


@pytest.fixture(scope="module")
def clf(tiny_model):
    return Classifier.from_pretrained(tiny_model, device="cpu")


def test_predict_returns_label_score_and_probs(clf):
    preds = clf.predict(["hello there", "please keep this between us and move to Signal"])
    assert len(preds) == 2
    for p in preds:
        assert p.label in LABELS
        assert set(p.probs) == set(LABELS)
        assert sum(p.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.score == pytest.approx(p.probs["grooming"])
        assert p.label == ("grooming" if p.score >= clf.threshold else "benign")


def test_length_sorted_batches_keep_input_order(clf):
    # Lengths vary widely so batches are reordered internally; results must come back per row.
    texts = [r["text"] for r in make_rows(60, seed=5)]
    one_by_one = np.vstack([clf.predict_proba([t]) for t in texts])
    saved = clf.max_tokens, clf.max_batch_size
    clf.max_tokens, clf.max_batch_size = 300, 7
    try:
        batched = clf.predict_proba(texts)
    finally:
        clf.max_tokens, clf.max_batch_size = saved
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    perm = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_allclose(clf.predict_proba([texts[i] for i in perm]), one_by_one[perm], atol=1e-5)


def test_scoring_applies_the_saved_normalisation(clf):
    plain = clf.predict_proba(["move to Telegram now"])
    disguised = clf.predict_proba(["move to Te\u200blegr\u0430m  now"])
    np.testing.assert_allclose(plain, disguised, atol=1e-6)


def test_non_string_text_is_a_type_error(clf):
    with pytest.raises(TypeError, match="text 1 is int"):
        clf.predict(["ok", 3])


def test_sliding_window_takes_most_suspicious_window(tiny_base, tmp_path):
    folder = build_classifier_folder(tmp_path / "m", tiny_base,
                                     text=TextSettings(max_length=16, long_text="sliding_window", window_stride=4))
    clf = Classifier.from_pretrained(folder, device="cpu")
    long_text = " ".join(f"word{i}" for i in range(200))
    windows, owners = clf.encode([long_text, "short"])
    assert len(windows) > 2 and owners.count(0) == len(windows) - 1
    per_window = clf._forward(windows)
    probs = clf.predict_proba([long_text, "short"])
    assert probs[0, 1] == pytest.approx(per_window[:-1, 1].max(), abs=1e-6)


def test_multiclass_model_uses_argmax(tiny_base, tmp_path):
    labels = ["a", "b", "c"]
    folder = build_classifier_folder(tmp_path / "m3", tiny_base, labels=labels, positive=None, threshold=None)
    clf = Classifier.from_pretrained(folder, device="cpu")
    preds = clf.predict(["one", "two two", "three three three"])
    probs = clf.predict_proba(["one", "two two", "three three three"])
    assert [p.label for p in preds] == [labels[i] for i in probs.argmax(1)]


def test_pickle_weights_refused_unless_allowed(tiny_model, tmp_path):
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model, pickled)
    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="pickle"):
        Classifier.from_pretrained(pickled)
    clf = Classifier.from_pretrained(pickled, allow_pickle=True)
    assert len(clf.predict(["hi"])) == 1


def test_custom_code_in_a_model_folder_never_runs_by_default(tiny_model, tmp_path):
    folder = tmp_path / "remote"
    shutil.copytree(tiny_model, folder)
    (folder / "evil.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('EXECUTED').write_text('ran')\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evil'\n"
        "class EvilModel(BertForSequenceClassification):\n    config_class = EvilConfig\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig",
                                               "AutoModelForSequenceClassification": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="trust_remote_code"):
        Classifier.from_pretrained(folder)
    assert not (folder / "EXECUTED").exists()


def test_no_hidden_side_effects_on_the_model_or_the_process(tiny_model, monkeypatch):
    """A library call changes neither what the caller passed nor process-wide settings."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from infer import ModelManifest
    from infer import device as device_module
    from infer.fastpath import FusedSelfAttention, optimize_for_inference

    def forbidden(*args, **kwargs):
        raise AssertionError("the library changed a process-wide setting")

    monkeypatch.setattr(device_module, "tune_cpu_allocator", forbidden)
    monkeypatch.setattr(device_module, "configure_threads", forbidden)
    threads = torch.get_num_threads()
    clf = Classifier.from_pretrained(tiny_model, device="cpu", precision="bf16")
    assert torch.get_num_threads() == threads
    assert clf.fused_attention_layers  # the model it loaded (and owns) was rewritten

    # A model the caller holds: optimize_for_inference works on a copy; the constructor uses
    # the model as given and rewrites nothing.
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model).eval()
    kinds = [type(m).__name__ for m in model.modules()]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    fast, report = optimize_for_inference(model, "cpu", "bf16", attention="matmul", prepack_weights=False)
    assert report.attention == "matmul+softmax" and report.fused_attention_layers
    assert any(isinstance(m, FusedSelfAttention) for m in fast.modules())
    tokenizer, manifest = AutoTokenizer.from_pretrained(tiny_model), ModelManifest.load(tiny_model)
    first = Classifier(model, tokenizer, manifest, torch.device("cpu"), "fp32")
    second = Classifier(fast, tokenizer, manifest, torch.device("cpu"), "bf16", fast_path=report)
    assert [type(m).__name__ for m in model.modules()] == kinds
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert first.attention == "none" and second.attention == "matmul+softmax"
    # The second classifier did not switch the first one's attention core.
    _, sdpa = optimize_for_inference(fast, "cpu", "bf16", attention="sdpa", prepack_weights=False)
    assert sdpa.attention == "sdpa" and second.attention == "matmul+softmax"
    assert all(m.manual_attention for m in fast.modules() if isinstance(m, FusedSelfAttention))
