"""Total-mass limits: the vehicle map, adjustments, deductions and caps (Order 62 Art. 3)."""

import pytest

from overload import RuleError, load_rules, tyre_from_width, vehicle_limit


def ids(limit):
    return [r.id for r in limit.rules]


@pytest.mark.parametrize(
    ("code", "kind", "limit_kg"),
    [
        ("12", "truck", 18000),
        ("15", "truck", 25000),
        ("112", "truck", 25000),
        ("122", "combination", 27000),
        ("115", "truck", 31000),
        ("125", "combination", 36000),
        ("155", "combination", 43000),
        ("1125", "combination", 43000),
        ("157", "combination", 49000),
        ("159", "combination", 49000),
        ("1155", "combination", 49000),
        ("1157", "combination", 49000),
    ],
)
def test_listed_codes_take_the_limit_of_their_kind(rules, code, kind, limit_kg):
    limit = vehicle_limit(code, rules)
    assert (limit.kind, limit.limit_kg, limit.inferred) == (kind, limit_kg, False)
    assert limit.rules[0].id == "axle-code.vehicle-map"


@pytest.mark.parametrize("code", ["1127", "1129"])
def test_six_axles_with_a_single_drive_axle_take_46000(rules, code):
    limit = vehicle_limit(code, rules)
    assert limit.limit_kg == 46000
    assert "limit.combination.6.single-drive" in ids(limit)


def test_149_single_drive_with_wide_base_tag_axle_takes_46000(rules):
    tyres = ["single", "wide_base", "dual", "wide_base", "wide_base", "wide_base"]
    assert vehicle_limit("149", rules, tyres=tyres).limit_kg == 46000


def test_149_from_digits_alone_keeps_46000_its_tag_axle_exempt(rules):
    # The 46 000 kg row is the limit for a tractor with one drive axle and a non-drive axle
    # beside it; deducting 3 000 kg for that tag axle again (43 000 kg) would count it twice
    # (limits.yaml tag_axle_exemption, with its [verify]). rules-cn.md §2 gives 149 46 t.
    limit = vehicle_limit("149", rules)
    assert limit.limit_kg == 46000
    assert ids(limit)[-1] == "limit.tag-axle-exemption"
    assert "axle(s) 2" in limit.rules[-1].detail
    assert limit.rules[-1].verify


def test_149_single_tyred_trailer_axle_is_still_deducted(rules):
    tyres = ["single", "single", "dual", "single", "wide_base", "wide_base"]
    limit = vehicle_limit("149", rules, tyres=tyres)
    assert limit.limit_kg == 46000 - 3000
    assert ids(limit)[-2:] == ["limit.tag-axle-exemption", "limit.single-tyre-deduction"]
    assert "axle(s) 4" in limit.rules[-1].detail


def test_without_the_exemption_row_149_takes_43000(rules_copy):
    path = rules_copy / "limits.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("tag_axle_exemption:")
    path.write_text(text[:start] + text[text.index("wide_base_tyre:"):], encoding="utf-8")
    assert vehicle_limit("149", load_rules(rules_copy)).limit_kg == 43000


def test_single_tyred_trailer_axle_lowers_the_limit_by_3000(rules):
    tyres = ["single", "dual", "dual", "single", "wide_base", "wide_base"]
    limit = vehicle_limit("159", rules, tyres=tyres)
    assert limit.limit_kg == 49000 - 3000
    deduction = limit.rules[-1]
    assert deduction.id == "limit.single-tyre-deduction"
    assert "axle(s) 4" in deduction.detail


def test_wide_base_tyres_are_excepted_from_the_deduction(rules):
    tyres = ["single", "dual", "dual", "wide_base", "wide_base", "wide_base"]
    limit = vehicle_limit("159", rules, tyres=tyres)
    assert limit.limit_kg == 49000
    assert "limit.single-tyre-deduction" not in ids(limit)


def test_digit_6_tridem_deducts_three_axles_and_is_inferred(rules):
    limit = vehicle_limit("156", rules)
    assert limit.inferred
    assert limit.limit_kg == 49000 - 3 * 3000


def test_steer_axle_single_tyres_are_not_deducted(rules):
    assert "limit.single-tyre-deduction" not in ids(vehicle_limit("112", rules))


def test_licence_mass_caps_the_2_axle_limit(rules):
    limit = vehicle_limit("12", rules, licence_mass_kg=16000)
    assert limit.limit_kg == 16000
    assert ids(limit)[-1] == "limit.licence-mass-cap"
    assert vehicle_limit("12", rules, licence_mass_kg=20000).limit_kg == 18000


def test_licence_mass_does_not_cap_other_kinds(rules):
    assert vehicle_limit("157", rules, licence_mass_kg=30000).limit_kg == 49000


def test_air_suspension_raises_3_and_4_axle_trucks_by_1000(rules):
    assert vehicle_limit("15", rules, air_suspension=True).limit_kg == 26000
    assert vehicle_limit("115", rules, air_suspension=True).limit_kg == 32000
    assert vehicle_limit("157", rules, air_suspension=True).limit_kg == 49000


def test_axle_sum_cap_binds_and_is_cited(rules):
    limit = vehicle_limit("11", rules)
    assert limit.limit_kg == 7000 + 7000
    cap = limit.rules[-1]
    assert cap.id == "limit.axle-sum-cap"
    assert "14 000 kg" in cap.detail


def test_unknown_spacing_takes_the_most_favourable_band_and_says_so(rules):
    unknown = vehicle_limit("127", rules)
    assert unknown.limit_kg == 7000 + 11500 + 24000
    assert any("most favourable" in note for note in unknown.assumptions)
    close = vehicle_limit("127", rules, group_spacings_m=[None, None, 1.25])
    assert close.limit_kg == 7000 + 11500 + 21000
    assert close.assumptions == ()


def test_4_axle_articulated_air_suspension_reaches_37000_before_the_axle_cap(rules):
    limit = vehicle_limit("125", rules, air_suspension=True, group_spacings_m=[None, None, 1.85])
    assert "limit.air-suspension.combination-4" in ids(limit)
    # 7 000 + 11 500 + 18 000 = 36 500 kg of axle limits cap the 37 000 kg (both [verify]).
    assert limit.limit_kg == 36500
    short = vehicle_limit("125", rules, air_suspension=True, group_spacings_m=[None, None, 1.5])
    assert "limit.air-suspension.combination-4" not in ids(short)


def test_register_kind_wins_over_the_code_map(rules):
    limit = vehicle_limit("1122", rules, kind="truck")
    assert limit.kind == "truck"
    assert limit.limit_kg == 31000
    assert any("register" in note for note in limit.assumptions)


def test_unlisted_code_falls_back_to_its_axle_count_and_says_inferred(rules):
    limit = vehicle_limit("1175", rules)
    assert (limit.inferred, limit.kind, limit.limit_kg) == (True, "combination", 49000)
    assert limit.rules[0].id == "axle-code.default.6"


def test_tyres_that_contradict_the_code_are_refused(rules):
    with pytest.raises(
        RuleError, match=r"tyres single, dual, dual of group 3 contradict digit '7'"
    ):
        vehicle_limit("157", rules, tyres=["single", "dual", "dual", "single", "dual", "dual"])


def test_bad_licence_mass_is_refused(rules):
    with pytest.raises(RuleError, match=r"licence mass must be above 0 kg \(got -1\)"):
        vehicle_limit("12", rules, licence_mass_kg=-1)


def test_wide_base_threshold_depends_on_the_axle(rules):
    assert tyre_from_width(425, drive=False, rules=rules) == "wide_base"
    assert tyre_from_width(424, drive=False, rules=rules) == "single"
    assert tyre_from_width(444, drive=True, rules=rules) == "single"
    assert tyre_from_width(445, drive=True, rules=rules) == "wide_base"
    with pytest.raises(RuleError, match=r"tyre section width must be a number of mm above 0"):
        tyre_from_width(-1, drive=True, rules=rules)


def test_group_spacings_must_match_the_groups(rules):
    with pytest.raises(RuleError, match=r"group_spacings_m lists 2 groups but code '157' has 3"):
        vehicle_limit("157", rules, group_spacings_m=[None, 1.3])
    with pytest.raises(RuleError, match=r"spacing of group 3 must be a number of metres above 0"):
        vehicle_limit("157", rules, group_spacings_m=[None, 1.3, -1])
