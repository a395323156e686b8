"""report.html (train.evaluation.html_report): parsed back and checked against the metrics."""

import html.parser
import json

import pytest

from conftest import make_rows, tag_rows, write_jsonl
from train.evaluation.evaluate import main, parse_args, run_evaluation
from train.evaluation.html_report import highlighted


class ReportParser(html.parser.HTMLParser):
    """Collects sections, messages (their text, marks and tags) and metric rows."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections, self.messages, self.metrics, self.images, self.tag_rows = {}, [], {}, 0, []
        self._section = self._message = self._in_text = self._mark = self._tag = self._metric = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id")
            self.sections[self._section] = {"total": a.get("data-total"), "shown": a.get("data-shown"), "ids": []}
        elif tag == "article" and "message" in (a.get("class") or ""):
            self._message = {"attrs": a, "text": "", "marks": [], "tags": [], "section": self._section}
            self.messages.append(self._message)
            self.sections[self._section]["ids"].append(a["data-id"])
        elif tag == "div" and a.get("class") == "text" and self._message is not None:
            self._in_text = True
        elif tag == "mark" and self._in_text:
            self._mark = {"start": int(a["data-start"]), "end": int(a["data-end"]), "drop": float(a["data-drop"]),
                          "offset": len(self._message["text"]), "text": ""}
            self._message["marks"].append(self._mark)
        elif tag == "span" and a.get("class") == "tag":
            self._tag = ""
        elif tag == "img" and (a.get("src") or "").startswith("data:image/png;base64,"):
            self.images += 1
        elif tag == "tr" and "data-metric" in a:
            self._metric = [a["data-metric"], []]
        elif tag == "tr" and "data-tag" in a:
            self.tag_rows.append(a["data-tag"])

    def handle_endtag(self, tag):
        if tag == "mark":
            self._mark = None
        elif tag == "div" and self._in_text:
            self._in_text = False
        elif tag == "article":
            self._message = None
        elif tag == "span" and self._tag is not None:
            self._message["tags"].append(self._tag)
            self._tag = None
        elif tag == "tr" and self._metric:
            self.metrics[self._metric[0]] = self._metric[1][-1]
            self._metric = None

    def handle_data(self, data):
        if self._in_text:
            self._message["text"] += data
            if self._mark is not None:
                self._mark["text"] += data
        if self._tag is not None:
            self._tag += data
        if self._metric is not None and data.strip():
            self._metric[1].append(data.strip())


def test_highlighting_escapes_and_rejects_spans_off_the_text():
    out = highlighted("a <b> & c. Keep quiet.", [{"start": 11, "end": 22, "text": "Keep quiet.", "drop": 0.2}])
    assert out.startswith("a &lt;b&gt; &amp; c. <mark data-start=\"11\" data-end=\"22\"")
    with pytest.raises(ValueError):
        highlighted("short", [{"start": 0, "end": 4, "text": "nope", "drop": 0.1}])


@pytest.fixture(scope="module")
def report(tagged_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    rows = tag_rows(make_rows(30, seed=11, prefix="h"))
    rows[0]["text"] = "Dear <Anna> & team. Our client\u200b pays well.\nKeep it between us, please."
    data = write_jsonl(folder / "data.jsonl", rows)
    args = parse_args(["--model", str(tagged_run.model_dir), "--data", str(data), "--output-dir", str(folder / "out"),
                       "--bootstrap-resamples", "10", "--html", "--html-examples", "4", "--threshold", "0.5"])
    result = run_evaluation(args)
    parser = ReportParser()
    parser.feed((folder / "out" / "report.html").read_text(encoding="utf-8"))
    return result, parser, {r["id"]: r for r in rows}, folder / "out"


def test_report_structure_and_highlights_match_the_messages(report):
    result, parsed, rows, _ = report
    assert set(parsed.sections) >= {"metrics", "plots", "tags", "top_scoring", "false_positives", "false_negatives"}
    assert parsed.images == 5  # every plot embedded, nothing linked
    assert parsed.messages and any(m["marks"] for m in parsed.messages)
    for message in parsed.messages:
        original = rows[message["attrs"]["data-id"]]["text"]
        assert message["text"] == original  # the page shows the message exactly
        for mark in message["marks"]:
            assert mark["offset"] == mark["start"]  # the mark sits at its stated offset
            assert original[mark["start"]:mark["end"]] == mark["text"] and mark["drop"] > 0
        assert set(message["tags"]) <= set(result["tags"]["per_tag"])


def test_report_counts_match_the_metrics(report):
    result, parsed, _, _ = report
    confusion = result["overall"]["confusion"]
    assert int(parsed.sections["false_positives"]["total"]) == confusion["fp"]
    assert int(parsed.sections["false_negatives"]["total"]) == confusion["fn"]
    assert int(parsed.sections["false_positives"]["shown"]) == min(4, confusion["fp"])
    assert len(parsed.sections["false_negatives"]["ids"]) == min(4, confusion["fn"])
    assert len(parsed.sections["top_scoring"]["ids"]) == 4
    assert parsed.metrics["f1"] == f"{result['overall']['f1']:.3f}"
    assert parsed.metrics["confusion_fp"] == str(confusion["fp"])
    for message in parsed.messages:
        predicted = message["attrs"]["data-predicted"]
        flagged = float(message["attrs"]["data-score"]) >= 0.5
        assert predicted == ("grooming" if flagged else "benign")
        if message["section"] == "false_positives":
            assert message["attrs"]["data-true"] == "benign" and flagged
        if message["section"] == "false_negatives":
            assert message["attrs"]["data-true"] == "grooming" and not flagged
    top = [float(m["attrs"]["data-score"]) for m in parsed.messages if m["section"] == "top_scoring"]
    assert top == sorted(top, reverse=True)
    assert set(parsed.tag_rows) == set(result["tags"]["per_tag"]) | {"micro", "macro"}


def test_markdown_and_json_still_name_rows_by_id_only(report):
    _, parsed, rows, folder = report
    shown = {m["attrs"]["data-id"] for m in parsed.messages}
    for name in ("report.md", "metrics.json"):
        written = (folder / name).read_text(encoding="utf-8")
        assert not any(json.dumps(rows[i]["text"])[1:-1] in written or rows[i]["text"] in written for i in shown)


def test_help_says_the_html_report_shows_message_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "MESSAGE TEXT" in " ".join(capsys.readouterr().out.split())
