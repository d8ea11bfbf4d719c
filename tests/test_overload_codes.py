"""Axle codes: parsing, building from measured axles, errors (rules-cn.md §2)."""

import pytest

from overload import RuleError, axle_code_from_axles, load_rules, parse_axle_code


def test_parse_gives_groups_axles_and_tyres(rules):
    parsed = parse_axle_code("149", rules)
    assert parsed.axles == 6
    assert [(g.digit, g.axles, g.tyres) for g in parsed.groups] == [
        ("1", 1, "single"),
        ("4", 2, "mixed"),
        ("9", 3, "wide_base"),
    ]
    assert parsed.axle_tyres() == (
        "single",
        "single",
        "dual",
        "wide_base",
        "wide_base",
        "wide_base",
    )
    assert [g.first_axle for g in parsed.groups] == [0, 1, 3]


def test_unknown_digit_names_digit_position_and_allowed(rules):
    with pytest.raises(RuleError) as err:
        parse_axle_code("1x2", rules)
    assert str(err.value) == (
        "unknown axle code '1x2': digit 'x' at position 2 is not an axle-group digit "
        "(allowed: 1-7, and 8, 9 as set by the vendor table 'generic')"
    )


@pytest.mark.parametrize(("code", "digit", "position"), [("102", "0", 2), ("15 7", " ", 3)])
def test_other_bad_digits(rules, code, digit, position):
    with pytest.raises(RuleError, match=f"digit {digit!r} at position {position} "):
        parse_axle_code(code, rules)


def test_empty_code_is_refused(rules):
    with pytest.raises(RuleError, match="axle code is empty"):
        parse_axle_code("  ", rules)


def test_axles_to_code(rules):
    assert (
        axle_code_from_axles([3.4, 1.35, 7.0, 1.31, 1.31], ["single"] + ["dual"] * 5, rules)
        == "157"
    )
    assert axle_code_from_axles([4.5], ["single", "dual"], rules) == "12"
    assert (
        axle_code_from_axles([1.95, 4.0, 1.3], ["single", "single", "dual", "dual"], rules) == "115"
    )


def test_wide_base_tridem_takes_the_vendor_digit_and_other_groups_the_standard_one(rules):
    wide = ["single", "dual", "wide_base", "wide_base", "wide_base"]
    assert axle_code_from_axles([3.6, 7.5, 1.31, 1.31], wide, rules) == "129"
    mixed = ["single", "dual", "wide_base", "dual", "dual"]
    assert axle_code_from_axles([3.6, 7.5, 1.31, 1.31], mixed, rules) == "128"
    assert axle_code_from_axles([3.6, 1.3], ["single", "wide_base", "wide_base"], rules) == "13"


def test_group_threshold_is_strict(rules):
    assert rules.group_threshold_m == 1.9
    assert axle_code_from_axles([1.9], ["dual", "dual"], rules) == "22"
    assert axle_code_from_axles([1.89], ["dual", "dual"], rules) == "5"


def test_group_of_four_axles_is_refused(rules):
    with pytest.raises(
        RuleError,
        match=r"axles 3-6 form a group of 4 axles .* no axle-group digit "
        r"covers more than 3 axles",
    ):
        axle_code_from_axles([3.0, 5.0, 1.3, 1.3, 1.3], ["single", "dual"] + ["dual"] * 4, rules)


@pytest.mark.parametrize(
    ("spacings", "tyres", "message"),
    [
        ([1.0, 2.0], ["dual", "dual"], r"2 axles need 1 spacings \(got 2\)"),
        ([-1.0], ["dual", "dual"], r"spacing between axles 1 and 2 must be .* \(got -1\.0\)"),
        ([3.0], ["dual", "triple"], r"tyres of axle 2 must be one of single, wide_base, dual"),
        ([], [], "no axles given"),
    ],
)
def test_bad_axle_inputs(rules, spacings, tyres, message):
    with pytest.raises(RuleError, match=message):
        axle_code_from_axles(spacings, tyres, rules)


def test_vendor_without_digit_9_refuses_it(rules_copy):
    text = (rules_copy / "axle_codes.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "vendors:\n  generic:",
        "vendors:\n  plain:\n    source: {act: x, article: y}\n"
        '    table: {"8": {axles: 3, tyres: single, description: other}}\n  generic:',
    )
    (rules_copy / "axle_codes.yaml").write_text(text, encoding="utf-8")
    plain = load_rules(rules_copy, vendor="plain")
    with pytest.raises(RuleError, match=r"allowed: 1-7, and 8 as set by the vendor table 'plain'"):
        parse_axle_code("159", plain)
    assert parse_axle_code("159", load_rules(rules_copy)).axles == 6
