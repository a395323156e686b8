"""A prompted instruct LLM as a zero-shot classifier: the benchmark's reference point for what a
small decoder knows before any fine-tuning.

Each message goes into a fixed question (through the tokenizer's chat template where it has
one); the model's next-token log-probabilities of the two answer words are compared, and the
positive label's probability is the softmax over those two. The threshold is then picked on
the validation split like every other system's, so the comparison is about ranking and
calibration, not about the prompt's bias toward one word.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from infer.text import TextSettings, normalize_text

QUESTION = ("Here is a message a professional received from someone they do not know.\n\n"
            "Message: \"{text}\"\n\n"
            "Is this message a suspicious attempt to cultivate or groom the recipient for espionage "
            "(secrecy, moving off the platform, paid reports, requests for inside information), "
            "rather than ordinary professional outreach? Answer Yes or No.")
#: Answer word per role: the positive label's, the other label's.
ANSWERS = ("Yes", "No")


class ZeroShotLLM:
    """``predict_proba`` like ``infer.Classifier`` for a binary task, from a causal LM folder."""

    def __init__(self, model_dir: str, labels: Sequence[str], positive: str, max_length: int = 256,
                 question: str = QUESTION, answers: Sequence[str] = ANSWERS, max_tokens: int = 4096,
                 max_batch_size: int = 16):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        labels = list(labels)
        if len(labels) != 2 or positive not in labels:
            raise ValueError(f"a zero-shot system scores a binary task; labels {labels}, positive {positive!r}")
        self.labels, self.positive = labels, positive
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True, dtype=torch.float32).eval()
        self.model.config.use_cache = False
        self.question, self.max_length = question, max_length
        self.max_tokens, self.max_batch_size = max_tokens, max_batch_size
        # The first token of each answer word as the model would write it after the prompt.
        self.answer_ids = [self._first_token(word) for word in answers]
        if self.answer_ids[0] == self.answer_ids[1]:
            raise ValueError(f"the answers {list(answers)} start with the same token")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def _first_token(self, word: str) -> int:
        ids = self.tokenizer(word, add_special_tokens=False).input_ids
        spaced = self.tokenizer(" " + word, add_special_tokens=False).input_ids
        # Chat templates end the prompt with a newline (the word comes bare); plain prompts with a space.
        return (ids if self.tokenizer.chat_template else spaced or ids)[0]

    def prompt_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(normalize_text(text, TextSettings()), add_special_tokens=False, truncation=True,
                             max_length=self.max_length).input_ids
        message = self.tokenizer.decode(ids)
        question = self.question.format(text=message)
        if self.tokenizer.chat_template:
            return list(self.tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                           add_generation_prompt=True, tokenize=True,
                                                           return_dict=True)["input_ids"])
        return self.tokenizer(question + "\nAnswer:").input_ids

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        from infer.batching import length_sorted_batches

        prompts = [self.prompt_ids(t) for t in texts]
        out = np.zeros((len(prompts), 2), dtype=np.float64)
        k = self.labels.index(self.positive)
        for batch in length_sorted_batches([len(p) for p in prompts], self.max_tokens, self.max_batch_size):
            longest = max(len(prompts[i]) for i in batch)
            input_ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, i in enumerate(batch):  # right padding: positions stay those of the prompt alone
                input_ids[row, : len(prompts[i])] = torch.as_tensor(prompts[i])
                mask[row, : len(prompts[i])] = 1
            with torch.inference_mode():
                # The backbone's states, then the LM head at each row's last prompt token only (the
                # full vocabulary at every position would be batch x length x vocab floats).
                states = self.model.get_decoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
                logits = self.model.get_output_embeddings()(states[torch.arange(len(batch)), mask.sum(1) - 1])
            last = logits[:, self.answer_ids].float()
            p_yes = torch.softmax(last, dim=-1)[:, 0].numpy()
            out[batch, k] = p_yes
            out[batch, 1 - k] = 1 - p_yes
        return out
