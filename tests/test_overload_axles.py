"""GB 1589-2016 axle-group checks: recorded as evidence, never graded."""

import pytest

from overload import RuleError, check_axle_loads


def test_each_group_checked_against_its_band(rules):
    checks = check_axle_loads(
        "157", [6500, 9000, 9200, 8000, 8000, 8000], [3.4, 1.35, 7.0, 1.31, 1.31], rules
    )
    assert [(c.group, c.load_kg, c.limit_kg, c.over) for c in checks] == [
        (1, 6500, 7000, False),
        (2, 18200, 18000, True),
        (3, 24000, 24000, False),
    ]
    assert [c.rule_id for c in checks] == [
        "axle.single.single-tyre",
        "axle.tandem.1.3-1.8",
        "axle.tridem.1.3-1.4",
    ]
    assert checks[2].spacing_m == 1.31
    assert checks[1].source.startswith("GB 1589-2016")


@pytest.mark.parametrize(
    ("spacing_m", "limit_kg"),
    [(0.9, 11500), (1.0, 16000), (1.29, 16000), (1.3, 18000), (1.85, 18000)],
)
def test_tandem_bands_by_spacing(rules, spacing_m, limit_kg):
    checks = check_axle_loads("125", [6000, 10000, 8000, 8000], [3.6, 7.0, spacing_m], rules)
    assert checks[2].limit_kg == limit_kg


@pytest.mark.parametrize(("spacing_m", "limit_kg"), [(1.2, 21000), (1.3, 21000), (1.31, 24000)])
def test_tridem_bands_by_spacing(rules, spacing_m, limit_kg):
    checks = check_axle_loads(
        "127", [6000, 10000, 8000, 8000, 8000], [3.6, 7.0, spacing_m, spacing_m], rules
    )
    assert checks[2].limit_kg == limit_kg


def test_uneven_tridem_spacing_uses_the_larger(rules):
    checks = check_axle_loads("127", [6000, 10000, 8000, 8000, 8000], [3.6, 7.0, 1.25, 1.35], rules)
    assert (checks[2].spacing_m, checks[2].limit_kg) == (1.35, 24000)


def test_unknown_spacings_take_the_most_favourable_band_and_record_it(rules):
    checks = check_axle_loads("127", [6000, 10000, 8000, 8000, 8000], None, rules)
    assert checks[2].limit_kg == 24000
    assert "most favourable to the party" in checks[2].assumption


def test_drive_axle_and_trailer_single_axles_differ(rules):
    checks = check_axle_loads("122", [6000, 11000, 10500], [3.6, 7.0], rules)
    assert [(c.limit_kg, c.over) for c in checks] == [(7000, False), (11500, False), (10000, True)]


def test_air_suspended_drive_tandem_takes_19000(rules):
    loads = [6500, 9400, 9400, 8000, 8000, 8000]
    plain = check_axle_loads("157", loads, [3.4, 1.35, 7.0, 1.31, 1.31], rules)
    air = check_axle_loads("157", loads, [3.4, 1.35, 7.0, 1.31, 1.31], rules, air_suspension=True)
    assert (plain[1].over, air[1].over, air[1].limit_kg) == (True, False, 19000)
    assert air[2].limit_kg == 24000


def test_load_and_spacing_counts_must_match_the_code(rules):
    with pytest.raises(RuleError, match=r"axle_loads_kg lists 5 axles but code '157' has 6"):
        check_axle_loads("157", [1, 2, 3, 4, 5], None, rules)
    with pytest.raises(RuleError, match=r"spacings_m lists 2 spacings but code '157' has 6 axles"):
        check_axle_loads("157", [1, 2, 3, 4, 5, 6], [1.0, 2.0], rules)
    with pytest.raises(RuleError, match=r"load of axle 2 must be a number of kg, 0 or more"):
        check_axle_loads("12", [1000, -5], None, rules)
