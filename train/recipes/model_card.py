"""The model card (``README.md``) written into every model folder."""

from __future__ import annotations

from infer.manifest import ModelManifest

from .config import Recipe

_METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "recall_at_1pct_fpr", "recall_at_5pct_fpr",
            "ece", "brier", "macro_f1")


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _tags_line(manifest, metrics: dict) -> str:
    """One line on the tactic-tag model (a joint head or a separate one), if the model has one."""
    from infer.tags import TAG_HEAD_FILE, TAG_TFIDF_FILE

    if manifest.tags is None:
        return ""
    test = (metrics.get("test") or {}).get("tags")
    figures = f"; test micro F1 {_fmt(test['micro']['f1'])}, macro F1 {_fmt(test['macro']['f1'])}" if test else ""
    what = (f"`{TAG_HEAD_FILE}`, a head trained jointly with the label" if manifest.tags.in_network else
            f"`{TAG_TFIDF_FILE}`, a separate word 1-2 gram TF-IDF + logistic regression per tag, fitted on "
            "the training rows; the network trained without tags")
    return (f"- Tactic tags ({len(manifest.tags.names)}, {what}, thresholds on the validation "
            f"split): {', '.join(manifest.tags.names)}{figures}\n")


def render_model_card(recipe: Recipe, manifest: ModelManifest, metrics: dict, command: str | None) -> str:
    data = recipe.data
    labels, base_model = manifest.labels, manifest.base_model
    data_desc = data.describe()
    splits = [s for s, m in metrics.items() if s not in ("train", "components") and isinstance(m, dict)]
    rows = []
    for key in _METRICS:
        if any(key in metrics[s] for s in splits):
            rows.append(f"| {key} | " + " | ".join(_fmt(metrics[s].get(key)) for s in splits) + " |")
    table = ("| metric | " + " | ".join(splits) + " |\n|---|" + "---|" * len(splits) + "\n" + "\n".join(rows)) if splits else "(no evaluation split)"
    train = metrics.get("train", {})
    threshold = manifest.threshold
    head = ("masked mean of the last hidden states, then one linear layer (`classifier.safetensors`)"
            if manifest.pooling == "mean" else "the architecture's own sequence-classification head")
    scoring = f"- Head: {head}; logits divided by temperature {manifest.temperature:g}"
    if manifest.blend and manifest.blend.get("combine") == "logistic":
        (a, b), c = manifest.blend["coef"], manifest.blend["intercept"]
        scoring += (f"\n- Blend: stacked with a word 1-2 gram TF-IDF + logistic regression model "
                    f"(`{manifest.blend['file']}`, fitted on the same training rows): the score is "
                    f"sigmoid({a:.3g} x network log-odds + {b:.3g} x TF-IDF log-odds {c:+.3g}), "
                    f"fitted on the validation split")
    elif manifest.blend:
        scoring += (f"\n- Blend: probabilities averaged with a word 1-2 gram TF-IDF + logistic regression model "
                    f"(`{manifest.blend['file']}`, fitted on the same training rows) at weight "
                    f"{manifest.blend['weight']:g}")
    parts = metrics.get("components") or {}
    if parts:
        scoring += "\n- AUROC of each part: " + "; ".join(
            f"{split}: " + ", ".join(f"{name} {_fmt(m.get('auroc'))}" for name, m in part.items())
            for split, part in parts.items())
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [outreach-guard, text-classification]
---
# outreach-guard classifier

Fine-tuned from `{base_model}` to classify single outreach messages as one of
{", ".join(f"`{x}`" for x in labels)}{f"; the score is the probability of `{data.positive_label}`" if data.positive_label in labels else ""}.

- Decision threshold: {_fmt(threshold)} (rule `{recipe.threshold.rule}` on the validation split)
{scoring}
- Text pipeline: {", ".join(f"{k}={v}" for k, v in recipe.text.to_dict().items())}
- Training data: `{data_desc}` ({train.get("rows")} training rows)
- Training: {_fmt(train.get("runtime_s"))} s, {_fmt(train.get("examples_per_s"))} examples/s, bf16 autocast: {train.get("bf16")}
{_tags_line(manifest, metrics)}
## Metrics

Produced by:

```
{command or 'train.recipes.train(recipe), from Python'}
```

{table}

Metrics are for the positive class at the saved threshold (threshold-free: AUROC, AUPRC).

## Use

```python
from infer import Classifier
clf = Classifier.from_pretrained("path/to/this/folder")
clf.predict(["Hello, I lead a small consultancy serving clients in Asia ..."])
```

or `python -m infer --model path/to/this/folder --input messages.jsonl --output scores.jsonl`.

## Intended use and limitations

- Intended for triage: flagging messages for a human to review, in security awareness tools and
  platform trust & safety queues. Not for automated decisions about people.
- Trained on an authored English corpus modelled on public counter-intelligence warnings, not
  on real intercepted messages; scores on real traffic will differ and need local validation.
- Sees one message's text only: no sender profile, history or metadata. Out of scope: job
  scams, phishing, spam and malware lures.
- Scores are probabilities from a fine-tuned model (temperature-scaled on the validation split
  where the recipe asks for it), not calibrated risk; check calibration (ECE above) on your own
  data before using them as such.
"""
