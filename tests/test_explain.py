"""Evidence by leave-one-sentence-out occlusion (infer.explain) and ``--explain`` in scoring."""

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import make_rows, write_jsonl
from infer import Classifier
from infer.explain import (evidence_items, keep_spans, occlusion_drops, predict_with_evidence, remove_spans,
                           sentence_spans)
from infer.manifest import TaskSpec
from infer.score import score_file


def test_sentence_spans_are_offsets_into_the_text_as_given():
    text = "  Dear Dr. Lee!  Our client\u200b pays well.\nKeep it between us?\n\n“Thanks.” Bye"
    spans = sentence_spans(text)
    pieces = [text[s:e] for s, e in spans]
    assert pieces == ["Dear Dr.", "Lee!", "Our client\u200b pays well.", "Keep it between us?", "“Thanks.”", "Bye"]
    assert all(p == p.strip() and p for p in pieces)


def test_one_sentence_falls_back_to_clauses():
    text = "Great to meet you, let's move to Telegram; and keep this between us"
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "Great to meet you,", "let's move to Telegram;", "and keep this between us"]
    assert sentence_spans("one") == [(0, 3)] and sentence_spans("   ") == []


def test_remove_and_keep_spans():
    text = "A one. B two. C three."
    spans = sentence_spans(text)
    assert remove_spans(text, [spans[1]]) == "A one. C three."
    assert keep_spans(text, [spans[2], spans[0]]) == "A one. C three."


class KeywordModel:
    """A stand-in classifier: the positive score is 0.2 + 0.3 per suspicious word, capped at 1."""

    task = TaskSpec(("benign", "grooming"), "grooming", 0.5)
    words = ("telegram", "secret")

    def __init__(self):
        self.calls = []

    def predict_proba_and_tags(self, texts):
        self.calls.append(len(texts))
        p = np.array([min(1.0, 0.2 + 0.3 * sum(w in t.lower() for w in self.words)) for t in texts])
        return np.stack([1 - p, p], axis=1), None


def test_occlusion_finds_the_sentences_that_carry_the_score_in_one_call():
    model = KeywordModel()
    texts = ["Hello Anna. Move to Telegram please. Nice weather. Keep it secret!", "Hi. Thanks."]
    probs, tag_probs, spans, drops = occlusion_drops(model, texts)
    assert model.calls == [2 + 4 + 2]  # originals and every variant in one batch
    assert tag_probs is None and probs[:, 1] == pytest.approx([0.8, 0.2])
    np.testing.assert_allclose(drops[0], [0.0, 0.3, 0.0, 0.3])
    items = evidence_items(texts[0], spans[0], drops[0], top_k=3)
    assert [i["text"] for i in items] == ["Move to Telegram please.", "Keep it secret!"]
    for item in items:
        assert texts[0][item["start"]:item["end"]] == item["text"] and item["drop"] == pytest.approx(0.3)
    assert evidence_items(texts[1], spans[1], drops[1]) == []  # nothing raises the score


def test_evidence_with_a_real_model_keeps_its_scores(tiny_model):
    clf = Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32")
    texts = [r["text"] for r in make_rows(10, seed=3)]
    preds = predict_with_evidence(clf, texts, top_k=2)
    plain = clf.predict(texts)
    for pred, ref, text in zip(preds, plain, texts):
        assert pred.score == pytest.approx(ref.score, abs=1e-6) and pred.label == ref.label
        assert len(pred.evidence) <= 2
        for item in pred.evidence:
            assert text[item["start"]:item["end"]] == item["text"] and item["drop"] > 0
            # the drop is the score of the text without that sentence, subtracted from the score
            without = clf.predict([remove_spans(text, [(item["start"], item["end"])])])[0].score
            assert item["drop"] == pytest.approx(ref.score - without, abs=1e-5)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_explain_writes_evidence_with_offsets_into_the_input_text(tiny_model, tmp_path, fmt):
    rows = make_rows(6, seed=8)
    # Characters the normaliser removes or folds: offsets must still index the text as given.
    rows[0]["text"] = "Hi\u200b Anna. Our сlient in Dubai pays. Keep it quiet!"
    rows[2]["text"] = None
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    clf = Classifier.from_pretrained(tiny_model, device="cpu", precision="fp32")
    out = tmp_path / f"out.{fmt}"
    counts = score_file(clf, src, out, chunk_size=4, progress=False, explain=True)
    assert counts["ok"] == 5 and counts["null_text"] == 1
    if fmt == "jsonl":
        got = [json.loads(line) for line in out.read_text().splitlines()]
        evidence = [g["evidence"] for g in got]
    elif fmt == "csv":
        with open(out, newline="") as fh:
            got = list(csv.DictReader(fh))
        assert "evidence" in got[0]
        evidence = [json.loads(g["evidence"]) if g["evidence"] else None for g in got]
    else:
        got = pq.read_table(out).to_pylist()
        evidence = [g["evidence"] for g in got]
    assert [str(g["id"]) for g in got] == [r["id"] for r in rows]
    assert evidence[2] is None
    assert sum(len(e) for e in evidence if e) > 0
    for row, items in zip(rows, evidence):
        for item in items or []:
            assert row["text"][item["start"]:item["end"]] == item["text"]
    plain = tmp_path / f"plain.{fmt}"
    score_file(clf, src, plain, chunk_size=4, progress=False)
    if fmt == "jsonl":  # the same scores as without --explain
        scores = [json.loads(line)["score"] for line in plain.read_text().splitlines()]
        assert [g["score"] for g in got] == pytest.approx(scores, abs=1e-6)


def test_explain_is_off_by_default_on_the_command_line(tiny_model, tmp_path):
    from infer.cli import main

    src = write_jsonl(tmp_path / "in.jsonl", make_rows(3, seed=1))
    assert main(["--model", str(tiny_model), "--input", str(src), "--output", str(tmp_path / "a.jsonl"),
                 "--no-progress"]) == 0
    assert "evidence" not in json.loads((tmp_path / "a.jsonl").read_text().splitlines()[0])
    assert main(["--model", str(tiny_model), "--input", str(src), "--output", str(tmp_path / "b.jsonl"),
                 "--no-progress", "--explain"]) == 0
    assert all("evidence" in json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines())


def test_faithfulness_figures_favour_occlusion_over_random_on_a_keyword_model():
    from train.evaluation.faithfulness import faithfulness

    class Wrapped(KeywordModel):
        def predict_proba(self, texts):
            return self.predict_proba_and_tags(texts)[0]

    texts = ["Hello there. Move to Telegram. Nice weather. Lunch soon. Keep it secret.",
             "Hi. Secret deal on Telegram. Thanks. Bye now."] * 3
    result = faithfulness(Wrapped(), texts, ks=(1,), seed=0)
    k1 = result["by_k"]["1"]["all"]
    assert k1["n"] == 6
    assert k1["occlusion"]["comprehensiveness"] == pytest.approx(np.mean([0.3, 0.6] * 3))
    assert k1["occlusion"]["comprehensiveness"] > k1["random"]["comprehensiveness"]
    assert k1["occlusion"]["sufficiency"] < k1["random"]["sufficiency"]
