"""Classification heads that transformers' ``AutoModelForSequenceClassification`` does not offer.

:class:`MeanPoolingClassifier`: the masked mean of an encoder's last hidden states, then dropout
and one linear layer. Sentence encoders such as all-MiniLM-L6-v2 were trained to be read this
way; BERT's own head reads only the first token through a pooler layer that such models never
trained. On messages written by people outside the team this head scored AUROC 0.970 against
0.957 for BERT's (data/README.md, "Model-quality probes").

A folder holds the encoder as ``save_pretrained`` writes it (``config.json`` and
``model.safetensors``, whose ``id2label`` names the outputs) and the head in
``classifier.safetensors``; ``outreach_guard.json`` says ``"head": {"pooling": "mean"}``.
Nothing is unpickled and no remote code runs.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: The file holding the head's weights next to the encoder's.
HEAD_FILE = "classifier.safetensors"


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real (unpadded) positions of each row."""
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class MeanPoolingClassifier(torch.nn.Module):
    """``encoder`` (any ``AutoModel``) -> masked mean -> dropout -> linear.

    ``forward`` takes and returns what a transformers sequence classifier does (``logits``, and
    ``loss`` when ``labels`` are given), so the ``Trainer`` and the scorer use it unchanged.
    ``config`` is the encoder's, with the label map.
    """

    def __init__(self, encoder, num_labels: int, dropout: float | None = None):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        hidden = self.config.hidden_size
        if dropout is None:
            dropout = getattr(self.config, "classifier_dropout", None) or getattr(self.config, "hidden_dropout_prob", 0.1)
        self.dropout = torch.nn.Dropout(float(dropout))
        self.classifier = torch.nn.Linear(hidden, num_labels, dtype=encoder.dtype, device=encoder.device)

    @property
    def num_labels(self) -> int:
        return self.classifier.out_features

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        logits = self.classifier(self.dropout(masked_mean(hidden, attention_mask)))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        self.encoder.save_pretrained(str(folder))
        state = {k: v.detach().contiguous().cpu() for k, v in self.classifier.state_dict().items()}
        save_file(state, str(folder / HEAD_FILE), metadata={"format": "pt", "pooling": "mean"})

    @classmethod
    def from_encoder(cls, name_or_path: str, labels: list[str], trust_remote_code: bool = False,
                     dropout: float | None = None) -> "MeanPoolingClassifier":
        """A fresh head for ``labels`` on a pretrained encoder (training starts here)."""
        from transformers import AutoModel

        kwargs = {"add_pooling_layer": False} if _takes_pooling_flag(name_or_path) else {}
        encoder = AutoModel.from_pretrained(name_or_path, use_safetensors=True, trust_remote_code=trust_remote_code,
                                            **kwargs)
        encoder.config.num_labels = len(labels)
        encoder.config.id2label = dict(enumerate(labels))
        encoder.config.label2id = {lab: i for i, lab in enumerate(labels)}
        return cls(encoder, len(labels), dropout)

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype=None, use_safetensors: bool = True,
                        trust_remote_code: bool = False) -> "MeanPoolingClassifier":
        """Load a folder written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        folder = Path(folder)
        kwargs = {"add_pooling_layer": False} if _takes_pooling_flag(folder) else {}
        encoder = AutoModel.from_pretrained(folder, use_safetensors=use_safetensors, dtype=dtype,
                                            trust_remote_code=trust_remote_code, **kwargs)
        head_file = folder / HEAD_FILE
        if not head_file.is_file():
            raise FileNotFoundError(f"{folder}: missing {HEAD_FILE} (the mean-pooling head's weights)")
        state = load_file(str(head_file))
        model = cls(encoder, int(state["weight"].shape[0]), dropout=0.0)
        model.classifier.load_state_dict({k: v.to(model.classifier.weight.dtype) for k, v in state.items()})
        return model


def _takes_pooling_flag(name_or_path) -> bool:
    """BERT-family encoders build a pooler layer this head never uses; leave it out."""
    from transformers import AutoConfig

    model_type = getattr(AutoConfig.from_pretrained(name_or_path), "model_type", "")
    return model_type in ("bert", "roberta", "xlm-roberta", "camembert", "mpnet")
