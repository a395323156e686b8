import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infer.text import TextSettings, normalize_text


def test_removes_zero_width_and_bidi_characters():
    assert normalize_text("We\u200bChat\u200d and Tele\u202egram\ufeff") == "WeChat and Telegram"


def test_folds_mixed_script_homoglyphs_but_keeps_real_cyrillic():
    # Cyrillic "Т", "е", "а" inside a Latin word.
    assert normalize_text("move to \u0422el\u0435gr\u0430m") == "move to Telegram"
    assert normalize_text("Привет, как дела?") == "Привет, как дела?"


def test_nfkc_and_whitespace():
    assert normalize_text("ＷｅＣｈａｔ\t\t id:\u00a0 abc\n\n\n  next ") == "WeChat id: abc\nnext"


def test_settings_can_turn_steps_off():
    raw = "a\u200bb  c"
    assert normalize_text(raw, TextSettings(strip_invisible=False, collapse_whitespace=False)) == raw


def test_settings_validation():
    with pytest.raises(ValueError, match="long_text"):
        TextSettings(long_text="chunks")
    with pytest.raises(ValueError, match="unknown text settings"):
        TextSettings.from_dict({"lower": True})


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalize_is_total_and_idempotent(text):
    out = normalize_text(text)
    assert isinstance(out, str)
    assert normalize_text(out) == out
    assert "\u200b" not in out and out == out.strip()
    assert unicodedata.is_normalized("NFKC", out)
