import json

import pytest

from conftest import make_rows, write_jsonl
from infer.text import normalize_text
from train.evaluation.robustness import (LOOKALIKES, PERTURBATIONS, TARGETED, ZERO_WIDTH, format_table, main, perturb,
                              typos)


def test_every_lookalike_the_attack_uses_is_folded_back():
    for latin, lookalikes in LOOKALIKES.items():
        for ch in lookalikes:
            assert normalize_text(f"x{ch}x") == f"x{latin}x", (latin, ch, hex(ord(ch)))


def test_zero_width_insertion_only_inserts_invisible_characters():
    text = make_rows(1, seed=4)[0]["text"]
    perturbed = perturb([text], "zero_width", seed=0)[0]
    assert len(perturbed) > len(text)
    assert "".join(ch for ch in perturbed if ch not in ZERO_WIDTH) == text


def test_typos_change_letters_inside_longer_words_only():
    import random

    text = "we can meet tomorrow regarding the confidential procurement schedule"
    out = typos(text, random.Random(1), rate=1.0)
    assert out != text and len(out.split(" ")) == len(text.split(" "))
    for before, after in zip(text.split(" "), out.split(" ")):
        assert before[0] == after[0]  # the first letter stays, as in most real typos
        if len(before) < 4:
            assert after == before


@pytest.fixture
def labelled(tmp_path):
    rows = [dict(r, split="test" if i % 3 else "train") for i, r in enumerate(make_rows(36, seed=12))]
    return write_jsonl(tmp_path / "corpus.jsonl", rows)


def test_report_has_f1_and_drop_for_every_perturbation(tiny_model, labelled, tmp_path, capsys):
    out = tmp_path / "robustness.json"
    assert main(["--model", str(tiny_model), "--data", str(labelled), "--split", "test", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == 24 and set(report["perturbations"]) == set(PERTURBATIONS)
    for name in TARGETED:
        # The normaliser (and, for casing, the uncased tokenizer) gives the model the very same input.
        r = report["perturbations"][name]
        assert r["identical_model_input"] == 1.0 and r["changed_predictions"] == 0.0 and r["drop_points"] == 0.0
    assert report["perturbations"]["typos"]["identical_model_input"] < 1.0
    assert report["target"]["met"] and report["target"]["worst_drop_points"] == 0.0
    table = capsys.readouterr().out
    assert format_table(report) in table and "| typos |" in table and "target: at most 2 F1 points" in table


def test_a_missed_target_is_reported(tiny_model, labelled, tmp_path):
    out = tmp_path / "r.json"
    assert main(["--model", str(tiny_model), "--data", str(labelled), "--split", "all", "--rows", "10",
                 "--max-drop", "-1", "--output", str(out)]) == 1  # exit status 1: target missed
    report = json.loads(out.read_text())
    assert report["rows"] == 10 and report["target"]["met"] is False
