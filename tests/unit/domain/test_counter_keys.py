"""Counter keys (#19 item 2): normalised spellings, grouped by case, bounded per team."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from aperture.domain.records import (
    COUNTER_KEY_LENGTH,
    OTHER_KEY,
    counter_fold,
    counter_key,
    resolve_counter_key,
)

texts = st.text(max_size=300)


@given(texts)
def test_a_key_is_trimmed_collapsed_printable_and_capped(text):
    key = counter_key(text)
    if key is None:
        return
    assert key == key.strip() and "  " not in key
    assert all(not ch.isspace() or ch == " " for ch in key)
    assert not any(unicodedata.category(ch).startswith("C") for ch in key)
    assert 0 < len(key) <= COUNTER_KEY_LENGTH


@given(texts)
def test_normalising_is_idempotent(text):
    key = counter_key(text)
    assert counter_key(key) == key


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=120))
def test_normalising_never_changes_case(text):
    key = counter_key(text)
    assert counter_key(text.upper()) == (key.upper() if key else None)
    assert counter_key(text.lower()) == (key.lower() if key else None)


def test_examples():
    assert counter_key("  Canon\x00 EOS\t\n5D\u200b ") == "Canon EOS 5D"
    assert counter_key("\x00\x01 \t") is None
    assert counter_key(None) is None
    assert counter_key("x" * 500) == "x" * COUNTER_KEY_LENGTH


@given(st.lists(st.text(min_size=1, max_size=20), max_size=60), st.integers(min_value=0, max_value=10))
def test_resolution_is_bounded_and_case_stable(raw, cap):
    known: dict[str, str] = {}
    for text in raw:
        key = counter_key(text)
        if key is None:
            continue
        resolved, new = resolve_counter_key(key, known, cap)
        if new:
            known[counter_fold(resolved)] = resolved
        # the same camera in any case resolves to the same key, now and later
        assert resolve_counter_key(key.upper(), known, cap)[0] == resolve_counter_key(key.lower(), known, cap)[0] or (
            counter_fold(key.upper()) != counter_fold(key.lower())
        )
        assert resolved == OTHER_KEY or counter_fold(resolved) in known
    assert len(known) <= cap
