"""The GA 36 plate grammar (config/rules/plates.yaml through overload.plates): property
tests against the simulated camera's own plate generator, and errors for a bad table."""

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from overload import RuleError
from overload.plates import PLATES_FILE, load_plate_grammar
from sim.plates import LETTERS, PROVINCES, random_plate_text

GRAMMAR = load_plate_grammar()
TEMPLATE_OF_COLOUR = {"blue": "ordinary", "yellow": "ordinary", "green": "new-energy-small",
                      "yellow_green": "new-energy-large"}


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), colour=st.sampled_from(sorted(TEMPLATE_OF_COLOUR)))
def test_every_generated_plate_is_a_plate_of_its_colour(seed, colour):
    text = random_plate_text(np.random.default_rng(seed), colour, letter_share=0.4)
    template = GRAMMAR.match(text)
    assert template is not None, text
    assert template.id == TEMPLATE_OF_COLOUR[colour]
    assert colour in template.colours


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), position=st.integers(1, 6),
       bad=st.sampled_from("IO"))
def test_no_plate_holds_i_or_o_but_an_authority_o(seed, position, bad):
    text = random_plate_text(np.random.default_rng(seed), "blue")
    mutated = text[:position] + bad + text[position + 1:]
    assert GRAMMAR.is_plate(mutated) == (position == 1 and bad == "O")


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), first=st.characters(codec="utf-8"))
def test_a_plate_opens_with_a_province(seed, first):
    text = random_plate_text(np.random.default_rng(seed), "blue")
    mutated = first + text[1:]
    assert GRAMMAR.is_plate(mutated) == (first in PROVINCES)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(0, 6))
def test_a_character_short_is_no_plate(seed, cut):
    text = random_plate_text(np.random.default_rng(seed), "blue")
    assert not GRAMMAR.is_plate(text[:cut] + text[cut + 1:])


@pytest.mark.parametrize(("text", "template"), [
    ("粤B1234挂", "trailer"), ("渝B3587学", "coach"), ("京A1234警", "police"),
    ("沪A1234领", "consulate"), ("粤Z1234港", "hong-kong-macau"), ("粤ZA123澳", "hong-kong-macau"),
    ("京AD12345", "new-energy-small"), ("京AF1234", "ordinary"), ("京AFAB234", None),
    ("京A12345D", "new-energy-large"),
    ("京A12345A", None),  # A is a small new-energy letter only
    ("京AA1234", "ordinary"), ("京A1234挂5", None), ("使A12345", None),
    # the province-level public-security organ's O: ordinary and police plates only
    ("粤O12345", "ordinary"), ("京OA1234", "ordinary"), ("浙O1234警", "police"),
    ("粤OB123挂", None), ("粤O1234学", None), ("粤OD12345", None), ("粤A1O234", None),
    ("京IA1234", None),
])
def test_endings_and_new_energy_letters(text, template):
    found = GRAMMAR.match(text)
    assert (found.id if found else None) == template


def test_every_template_names_its_source_and_the_provinces_are_31():
    assert len(GRAMMAR.provinces) == 31 and set(GRAMMAR.provinces) == set(PROVINCES)
    assert all(t.source for t in GRAMMAR.templates)
    assert set(GRAMMAR.templates[0].allowed[1]) == set(LETTERS) | {"O"}   # 粤O…


def _write_changed(rules_copy, change):
    path = rules_copy / PLATES_FILE
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_an_unknown_alphabet_is_an_error_naming_the_file_and_the_template(rules_copy):
    path = _write_changed(rules_copy, lambda d: d["templates"][0]["positions"].append("emoji"))
    with pytest.raises(RuleError, match=r"plates\.yaml.*ordinary.*emoji"):
        load_plate_grammar(rules_copy)
    assert path.exists()


def test_a_repeated_character_in_an_alphabet_is_an_error(rules_copy):
    _write_changed(rules_copy, lambda d: d["alphabets"].update(digit="01234567890"))
    with pytest.raises(RuleError, match="digit"):
        load_plate_grammar(rules_copy)


def test_a_template_without_source_is_an_error(rules_copy):
    _write_changed(rules_copy, lambda d: d["templates"][1].pop("source"))
    with pytest.raises(RuleError, match="source"):
        load_plate_grammar(rules_copy)
