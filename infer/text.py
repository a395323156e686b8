"""The one text pipeline: normalisation settings shared by training and scoring.

Training calls :func:`normalize_text` through :class:`TextSettings` before tokenising, the
settings are saved in the model folder, and the scorer reads them back, so a model always
sees text exactly as it was trained.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import unicodedata

# Zero-width and bidirectional control characters: invisible, used to split words so that
# keyword or token matching fails ("We\u200bChat"). Removing them restores the visible text.
# Tag characters (U+E0000 block) and the variation selectors supplement are invisible too and
# are used to smuggle text past filters.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")
# Unpaired surrogates (a JSON "\\ud800" escape) are not text: no encoder or tokenizer accepts them.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# Other C0/C1 control characters except tab/newline/carriage return (those become whitespace).
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Whitespace runs other than a single plain space (which would be replaced by itself).
_SPACES_RE = re.compile(r" [^\S\n]+|[^\S\n ][^\S\n]*")
_NEWLINES_RE = re.compile(r"\s*\n\s*")

# Cyrillic and Greek letters that render like Latin ones. NFKC does not fold these, and an
# attacker can swap them in ("Теlеgrаm") to move text away from what the model learned.
_HOMOGLYPHS = {
    # Cyrillic lower / upper
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "һ": "h", "ɡ": "g",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ї": "I", "Ј": "J", "Ԛ": "Q",
    "Ԝ": "W",
    # Greek lower / upper
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "ι": "i", "κ": "k", "τ": "t", "υ": "u", "χ": "x",
    "ε": "e", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Less common Cyrillic and Greek forms, and Armenian letters seen in phishing
    "ӏ": "l", "Ӏ": "I", "ү": "y", "Ү": "Y", "ѵ": "v", "Ѵ": "V", "ϲ": "c", "Ϲ": "C", "ϳ": "j",
    "օ": "o", "ս": "u", "ո": "n", "հ": "h",
    # What NFKC makes of the lunate sigmas "ϲ" and "Ϲ" (it runs first)
    "ς": "c", "Σ": "C",
}
_HOMOGLYPH_TABLE = str.maketrans(_HOMOGLYPHS)
_LOOKALIKE_RE = re.compile("[" + "".join(_HOMOGLYPHS) + "]")
_LATIN_RE = re.compile("[A-Za-z]")


@dataclasses.dataclass(frozen=True)
class TextSettings:
    """How raw message text becomes model input. Saved with every model.

    Attributes:
        unicode_nfkc: apply Unicode NFKC (full-width letters, ligatures, styled maths letters).
        strip_invisible: remove zero-width, bidi and other control characters.
        fold_homoglyphs: map Cyrillic/Greek look-alikes of Latin letters to Latin, but only in
            words that also contain Latin letters, or that are made of look-alikes only in
            mostly-Latin text, so genuine Russian or Greek text is kept.
        collapse_whitespace: runs of spaces/tabs become one space; blank lines collapse.
        lowercase: lowercase the text (off: the tokenizer decides casing).
        max_length: tokenizer truncation length, in tokens.
        long_text: what happens to texts longer than ``max_length``: ``truncate`` keeps the
            start; ``sliding_window`` scores overlapping windows and keeps the maximum
            positive-class probability.
        window_stride: overlap, in tokens, between windows for ``sliding_window``.
        max_windows: at most this many windows per text for ``sliding_window`` (the start
            of the text); the rest is ignored, so one huge message cannot stall a batch.
    """

    unicode_nfkc: bool = True
    strip_invisible: bool = True
    fold_homoglyphs: bool = True
    collapse_whitespace: bool = True
    lowercase: bool = False
    max_length: int = 256
    long_text: str = "truncate"
    window_stride: int = 64
    max_windows: int = 16

    def __post_init__(self):
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, got {self.max_length}")
        if self.long_text not in ("truncate", "sliding_window"):
            raise ValueError(f"long_text must be 'truncate' or 'sliding_window', got {self.long_text!r}")
        if self.long_text == "sliding_window" and not 0 <= self.window_stride <= self.max_length // 2:
            raise ValueError("window_stride (the overlap) must be between 0 and max_length / 2 tokens")
        if self.max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, got {self.max_windows}")

    @classmethod
    def from_dict(cls, values: dict | None) -> "TextSettings":
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown text settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_long_text(self, policy: str) -> "TextSettings":
        """These settings under another long-text policy (the overlap capped to stay valid)."""
        return dataclasses.replace(self, long_text=policy, window_stride=min(self.window_stride, self.max_length // 2))


# A word that contains at least one look-alike letter.
# The leading \b makes matching linear: a match can only start where a word starts.
_DISGUISED_WORD_RE = re.compile(rf"\b\w*{_LOOKALIKE_RE.pattern}\w*")


def _all_latin(word: str) -> bool:
    """Only ASCII and Latin-script letters ("Chloé", "Łódź")."""
    return word.isascii() or all(ch.isascii() or unicodedata.name(ch, "").startswith("LATIN") for ch in word)


def _fold_homoglyphs(text: str) -> str:
    if text.isascii() or not _LOOKALIKE_RE.search(text):
        return text  # the common case, and a multi-megabyte message stays cheap
    # Mixed-script words ("Теlеgrаm") are always disguised Latin.
    text = _DISGUISED_WORD_RE.sub(
        lambda m: m.group(0).translate(_HOMOGLYPH_TABLE) if _LATIN_RE.search(m.group(0)) else m.group(0), text)
    if not _LOOKALIKE_RE.search(text):
        return text
    # A word made only of look-alikes ("сорр") is folded only in mostly-Latin text, so real
    # Russian or Greek text is left alone. Counting after the first step keeps the decision
    # the same when the text is normalised again.
    latin = len(text) - len(_LATIN_RE.sub("", text))
    if latin < len(_LOOKALIKE_RE.findall(text)):
        return text

    def fold_word(match: re.Match) -> str:
        folded = match.group(0).translate(_HOMOGLYPH_TABLE)
        return folded if _all_latin(folded) else match.group(0)

    return _DISGUISED_WORD_RE.sub(fold_word, text)


def normalize_text(text: str, settings: TextSettings = TextSettings()) -> str:
    """Normalise one message. Total for every ``str``: never raises, never returns None."""
    text = _SURROGATE_RE.sub("", text)
    # Invisible characters go first: removing them after NFKC could leave a sequence that
    # NFKC would have composed, and normalisation would no longer be idempotent.
    if settings.strip_invisible:
        text = _INVISIBLE_RE.sub("", text)
        text = _CONTROL_RE.sub(" ", text)
    if settings.unicode_nfkc:
        text = unicodedata.normalize("NFKC", text)
    if settings.fold_homoglyphs:
        text = _fold_homoglyphs(text)
    if settings.collapse_whitespace:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = _SPACES_RE.sub(" ", text)
        text = _NEWLINES_RE.sub("\n", text).strip()
    if settings.lowercase:
        text = text.lower()
    return text


def tokenize(tokenizer, texts, settings: TextSettings, windows: bool = False) -> tuple[list[list[int]], list[int]]:
    """Normalise and tokenise ``texts`` the one way both training and scoring use.

    Returns token-id lists (no padding) and, for each list, the index of the text it came from.
    With ``windows=True`` and ``long_text="sliding_window"``, a long text yields several
    overlapping windows; otherwise each text is truncated to ``max_length`` tokens.
    """
    # Characters past what max_length tokens can cover are cut before tokenising, so a
    # multi-megabyte message costs no more than a long one. No token of a real-world text is
    # 64 characters long, so this never changes what the model sees under truncation.
    limit = settings.max_length * 64
    normalized = [normalize_text(t, settings) for t in texts]
    if windows and settings.long_text == "sliding_window":
        enc = tokenizer([t[: limit * settings.max_windows] for t in normalized], truncation=True,
                        max_length=settings.max_length, stride=settings.window_stride,
                        return_overflowing_tokens=True, return_attention_mask=False, return_token_type_ids=False)
        # The character cut bounds the work; this bounds the windows (texts with very short
        # tokens, such as runs of punctuation, can still make many).
        kept_ids, owners, per_text = [], [], collections.Counter()
        for ids, owner in zip(enc["input_ids"], enc["overflow_to_sample_mapping"]):
            per_text[owner] += 1
            if per_text[owner] <= settings.max_windows:
                kept_ids.append(ids)
                owners.append(owner)
        return kept_ids, owners
    enc = tokenizer([t[:limit] for t in normalized], truncation=True, max_length=settings.max_length,
                    return_attention_mask=False, return_token_type_ids=False)
    return enc["input_ids"], list(range(len(texts)))
