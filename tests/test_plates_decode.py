"""Constrained CTC decoding (plates.decode) on score matrices built here: the frames a
recogniser would give for a text, with the confusions the generic one makes."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overload.plates import load_plate_grammar
from plates.decode import Charset, Pattern, decode, greedy
from sim.plates import random_plate_text

GRAMMAR = load_plate_grammar()
CHARSET = Charset(["blank", *GRAMMAR.characters, *"IO四豫·", " "])
PATTERNS = [Pattern(t.id, t.allowed) for t in GRAMMAR.templates]


def frames_for(text: str, *, width: int = 3, gap: int = 1, peak: float = 0.9,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Softmax-like frames: per character ``width`` frames peaking on it, ``gap`` blank
    frames between, a little noise spread over every class."""
    rng = rng or np.random.default_rng(0)
    rows = []

    def frame(index: int) -> np.ndarray:
        row = rng.uniform(0, 1, len(CHARSET.characters))
        row *= (1 - peak) / row.sum()
        row[index] += peak
        return row

    rows += [frame(0) for _ in range(gap)]
    for ch in text:
        rows += [frame(CHARSET.index[ch]) for _ in range(width)]
        rows += [frame(0) for _ in range(gap)]
    return np.array(rows)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       colour=st.sampled_from(["blue", "yellow", "green", "yellow_green"]),
       width=st.integers(1, 4), gap=st.integers(0, 2))
def test_a_clear_plate_decodes_to_itself(seed, colour, width, gap):
    rng = np.random.default_rng(seed)
    text = random_plate_text(rng, colour, letter_share=0.4)
    if gap == 0 and any(a == b for a, b in itertools.pairwise(text)):
        gap = 1   # CTC needs a blank between repeated characters
    found = decode(frames_for(text, width=width, gap=gap, rng=rng), PATTERNS, CHARSET)
    assert found is not None and found.text == text
    assert found.confidence > 0.85 ** len(text) and found.fit > 0.9


def _swap(probs: np.ndarray, frames: slice, first: str, second: str, share: float):
    """On ``frames``, give ``first`` the top score and ``second`` ``share`` of the mass."""
    probs[frames] = 0.001
    probs[frames, CHARSET.index[first]] = 1 - share
    probs[frames, CHARSET.index[second]] = share
    return probs


def test_a_letter_o_where_only_digits_may_stand_becomes_the_digit():
    text = "京AD12345"        # small new-energy: the last four are digits only
    probs = _swap(frames_for(text), slice(25, 28), "O", "0", 0.2)   # the '4' → O / 0
    found = decode(probs, PATTERNS, CHARSET)
    assert found.text == "京AD12305"
    assert greedy(probs, CHARSET) == "京AD123O5"


def test_the_round_glyph_s_belief_counts_for_the_digit_it_can_only_be():
    """GA 36 has no O: what the recogniser gives the O on a plate it gives the 0, so a
    clear 0 read as O is a confident 0, not a doubtful one."""
    probs = _swap(frames_for("京AD12345"), slice(25, 28), "O", "0", 0.15)
    found = decode(probs, PATTERNS, CHARSET)
    assert found.text == "京AD12305"
    assert found.char_confidence[6] > 0.95
    assert found.confidence > 0.4          # 0.9 per character; unfolded it would be 0.07


def test_a_letter_i_counts_for_the_one_but_never_for_a_letter():
    probs = _swap(frames_for("沪A12345"), slice(9, 12), "I", "1", 0.1)    # the '1'
    found = decode(probs, [p for p in PATTERNS if p.id == "ordinary"], CHARSET)
    assert found.text == "沪A12345" and found.char_confidence[2] > 0.95


def test_a_province_misread_as_a_non_province_takes_the_best_province():
    probs = _swap(frames_for("川A12345"), slice(1, 4), "四", "川", 0.05)
    found = decode(probs, PATTERNS, CHARSET)
    assert found.text == "川A12345"
    assert found.char_confidence[0] == pytest.approx(0.05, abs=0.01)
    assert found.confidence < 0.1          # the doubt shows in the confidence


def test_one_character_held_over_many_frames_is_one_character():
    probs = frames_for("沪A12345")
    held = np.repeat(probs[5:8], 3, axis=0)       # 'A' over 9 frames, no blank
    probs = np.concatenate([probs[:5], held, probs[8:]])
    found = decode(probs, PATTERNS, CHARSET)
    assert found.text == "沪A12345"


def test_separators_count_as_nothing():
    probs = frames_for("苏E·2Y256".replace("·", "·"))
    found = decode(probs, PATTERNS, CHARSET)
    assert found.text == "苏E2Y256"


def test_too_few_frames_for_any_plate_is_none_not_a_guess():
    assert decode(frames_for("京A1", gap=0, width=1), PATTERNS, CHARSET) is None


def test_an_eight_character_reading_is_no_ordinary_plate():
    found = decode(frames_for("皖DFX8861"), PATTERNS, CHARSET)
    assert found.pattern == "new-energy-small"
    ordinary_only = [p for p in PATTERNS if p.id == "ordinary"]
    forced = decode(frames_for("皖DFX8861"), ordinary_only, CHARSET)
    assert forced.fit < found.fit and forced.unexplained < 0.2
    assert forced.confidence < 0.1 < found.confidence
