"""Grading against the discretion benchmarks: worked cases of Order 62 Art. 43 and 浙江省公路条例
Art. 53, tolerance policies, caps and dimensions."""

import math

import numpy as np
import pytest

from overload import RuleError, grade, grade_many, load_rules


def edit(folder, name: str, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` once in one table, insisting that ``old`` is there."""
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def rule_ids(result):
    return [r.id for r in result.rules]


@pytest.mark.parametrize(
    ("rounding", "fine"), [("floor", 3000), ("ceil", 3500), ("pro_rata", 3200)]
)
def test_157_at_55400_national_fine_by_rounding(rules, rounding, fine):
    g = grade("157", 55400, rules, rounding=rounding)
    assert (g.limit_kg, g.excess_kg, g.action, g.fine_yuan) == (49000, 6400, "fine", fine)
    assert g.rounding == rounding
    assert g.band == "national.mass.fine"


def test_national_default_rounding_is_floor_and_recorded(rules):
    g = grade("157", 55400, rules)
    assert g.rounding == "floor"
    assert "6 × 1 000 kg (floor) × 500 yuan = 3 000 yuan" in g.rules[-1].detail


def test_exactly_at_the_limit_is_not_over(rules):
    g = grade("157", 49000, rules)
    assert (g.over, g.action, g.fine_yuan, g.band, g.excess_kg) == (False, "none", None, None, 0)


def test_500_kg_over_is_a_warning(rules):
    g = grade("157", 49500, rules)
    assert (g.over, g.action, g.fine_yuan, g.band) == (
        True,
        "warning",
        None,
        "national.mass.warning",
    )


def test_the_1000_kg_warning_edge_on_both_sides(rules):
    at_edge = grade("157", 50000, rules)
    assert (at_edge.action, at_edge.fine_yuan) == ("warning", None)
    above = grade("157", 50001, rules)
    assert (above.action, above.fine_yuan) == ("fine", 500)
    assert grade("157", 50001, rules, rounding="pro_rata").fine_yuan == pytest.approx(500.5)


def test_national_fine_is_capped_at_30000(rules):
    g = grade("157", 49000 + 70000, rules)
    assert g.fine_yuan == 30000
    assert rule_ids(g)[-1] == "national.mass.cap"
    below = grade("157", 49000 + 59000, rules)
    assert below.fine_yuan == 29500
    assert "national.mass.cap" not in rule_ids(below)


def test_zhejiang_2_axle_at_25000(rules):
    # 7 000 kg over 18 000 = 38.9 %; the part above 20 % (3 600 kg) is 3 400 kg = 3.4 t.
    g = grade("12", 25000, rules, benchmark="zhejiang")
    assert g.excess_pct == pytest.approx(38.89, abs=0.01)
    assert (g.action, g.band, g.rounding, g.fine_yuan) == (
        "fine",
        "zhejiang.mass.20-50pct",
        "floor",
        3 * 300,
    )
    assert grade("12", 25000, rules, benchmark="zhejiang", rounding="pro_rata").fine_yuan == 1020
    assert grade("12", 25000, rules, benchmark="zhejiang", rounding="ceil").fine_yuan == 1200


def test_zhejiang_up_to_20_percent_is_education_only(rules):
    # Art. 53(一): 批评教育, 可以不予处罚. Not a 警告: a 警告 is itself a penalty
    # (行政处罚法 Art. 9(一)), so the band's action is education, with no fine.
    g = grade("12", 18000 * 1.2, rules, benchmark="zhejiang")
    assert (g.action, g.fine_yuan, g.band) == ("education", None, "zhejiang.mass.education")
    assert "zhejiang.mass.zero-fine" not in rule_ids(g)


def test_zhejiang_above_50_percent_adds_500_per_tonne_for_that_part(rules):
    # 157 at 49 000 × 1.7: 20–50 % part 14 700 kg → 14 t × 300; above 50 % 9 800 kg → 9 t × 500.
    g = grade("157", 49000 * 1.7, rules, benchmark="zhejiang")
    assert g.fine_yuan == 14 * 300 + 9 * 500
    assert {"zhejiang.mass.20-50pct", "zhejiang.mass.above-50pct"} <= set(rule_ids(g))


def test_zhejiang_cap_30000(rules):
    g = grade("157", 49000 * 3, rules, benchmark="zhejiang")  # 4 200 + 98 × 500
    assert g.fine_yuan == 30000
    assert rule_ids(g)[-1] == "zhejiang.mass.cap"


def test_zhejiang_tiny_part_above_20_percent_rounds_to_no_fine(rules):
    # 400 kg above 20 % floors to 0 t × 300 yuan = 0: Art. 53 has no 警告, so the table's
    # zero_fine row gives education (行政处罚法 Art. 33 ¶3), cited in the grade.
    g = grade("12", 18000 * 1.2 + 400, rules, benchmark="zhejiang")
    assert (g.band, g.action, g.fine_yuan) == ("zhejiang.mass.20-50pct", "education", None)
    zero = g.rules[-1]
    assert (zero.id, zero.source.article, zero.verify) == ("zhejiang.mass.zero-fine",
                                                           "第三十三条", True)
    assert zero.detail == "the fine rounds to 0 yuan: education"
    assert grade("12", 18000 * 1.2 + 1000, rules, benchmark="zhejiang").fine_yuan == 300


def test_national_zero_fine_row_gives_a_warning(rules_copy):
    # With 2 000 kg per unit an excess of 1 500 kg floors to 0 units: the national row says
    # warning (the national scale has the 警告), and cites itself.
    edit(rules_copy, "benchmarks/national.yaml", "per_kg: 1000", "per_kg: 2000")
    g = grade("157", 50500, load_rules(rules_copy))
    assert (g.band, g.action, g.fine_yuan) == ("national.mass.fine", "warning", None)
    assert g.rules[-1].id == "national.mass.zero-fine"


def test_zero_fine_action_is_data(rules_copy):
    edit(rules_copy, "benchmarks/zhejiang.yaml", "  zero_fine:\n    id: zhejiang.mass.zero-fine\n"
         "    description: a fine that rounds to 0 yuan is criticism and education (批评教育), "
         "no penalty\n    action: education", "  zero_fine:\n    id: zhejiang.mass.zero-fine\n"
         "    description: changed\n    action: warning")
    g = grade("12", 18000 * 1.2 + 400, load_rules(rules_copy), benchmark="zhejiang")
    assert g.action == "warning"


def test_zhejiang_dimensions_cite_art_64_via_art_51(rules):
    g = grade("12", 18000, rules, benchmark="zhejiang", height_m=4.3)
    link = next(r for r in g.rules if r.id == "zhejiang.dimensions-from")
    assert link.source.cite() == "公路安全保护条例（2011） 第六十四条"
    assert "via 浙江省公路条例（2020） 第五十一条" in link.detail
    assert g.rules[-1].id == "national.dimensions.medium"
    assert (g.action, g.fine_min_yuan, g.fine_max_yuan) == ("fine", 200, 1000)


def test_149_worked_example_grades_at_46000(rules):
    # 6×2 tractor 149 at 49 400 kg: limit 46 000 kg (the tag axle of the tractor's drive
    # tandem is not deducted, limits.yaml tag_axle_exemption), excess 3 400 kg → 3 × 500.
    # Deducting it (43 000 kg) would give 6 400 kg → 3 000 yuan.
    g = grade("149", 49400, rules)
    assert (g.limit_kg, g.excess_kg, g.action, g.fine_yuan) == (46000, 3400, "fine", 1500)
    assert "limit.tag-axle-exemption" in rule_ids(g)
    assert "limit.single-tyre-deduction" not in rule_ids(g)


def test_tolerance_policies_change_the_grade(rules):
    none = grade("157", 55400, rules, tolerance="none")
    pct = grade("157", 55400, rules, tolerance="highway-entrance-5pct")
    mpe = grade("157", 55400, rules, tolerance="mpe", accuracy_class=5)
    assert (none.tolerance_kg, none.excess_kg, none.fine_yuan) == (0, 6400, 3000)
    assert (pct.tolerance_kg, pct.excess_kg, pct.fine_yuan) == (2450, 3950, 1500)
    assert (mpe.tolerance_kg, mpe.excess_kg, mpe.fine_yuan) == (2770, 3630, 1500)
    assert mpe.accuracy_class == "5"
    assert "mpe" in rule_ids(mpe)


def test_tolerance_decides_over_or_not(rules):
    inside = grade("157", 49000 * 1.05, rules, tolerance="highway-entrance-5pct")
    assert (inside.over, inside.action) == (False, "none")
    assert grade("157", 51000, rules, tolerance="mpe", accuracy_class=10).action == "none"
    assert grade("157", 51000, rules, tolerance="mpe", accuracy_class="2").action == "warning"


def test_mpe_needs_a_known_accuracy_class(rules):
    with pytest.raises(
        RuleError, match=r"needs an accuracy class \(known: 0\.2, 0\.5, 1, 2, 5, 10\)"
    ):
        grade("157", 55400, rules, tolerance="mpe")
    with pytest.raises(RuleError, match=r"has no accuracy class '3'"):
        grade("157", 55400, rules, tolerance="mpe", accuracy_class=3)


def test_unknown_benchmark_and_policy_list_the_known_ones(rules):
    with pytest.raises(RuleError, match=r"unknown benchmark 'hubei' \(known: national, zhejiang\)"):
        grade("157", 55400, rules, benchmark="hubei")
    with pytest.raises(RuleError, match=r"unknown tolerance policy 'loose' \(known: none, "):
        grade("157", 55400, rules, tolerance="loose")


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "heavy"])
def test_bad_gross_mass_is_refused(rules, bad):
    with pytest.raises(RuleError, match="gross mass must be"):
        grade("157", bad, rules)


def test_single_drive_46000_cases_are_graded_at_46000(rules):
    g = grade("1127", 49000, rules)
    assert (g.limit_kg, g.excess_kg, g.fine_yuan) == (46000, 3000, 1500)


def test_licence_mass_lowers_the_graded_limit(rules):
    g = grade("12", 18000, rules, licence_mass_kg=16000)
    assert (g.limit_kg, g.excess_kg, g.fine_yuan) == (16000, 2000, 1000)
    assert "limit.licence-mass-cap" in rule_ids(g)


def test_inferred_code_is_graded_and_flagged(rules):
    g = grade("1175", 55400, rules)
    assert g.inferred and g.to_dict()["inferred"] is True
    assert g.fine_yuan == 3000


def test_dimensions_add_a_fine_range(rules):
    g = grade("157", 55400, rules, height_m=4.3, width_m=2.5)
    assert (g.action, g.fine_yuan, g.fine_min_yuan, g.fine_max_yuan) == ("fine", None, 3200, 4000)
    assert [c.over for c in g.dimensions] == [True, False]
    assert {"limit.height", "national.dimensions.medium"} <= set(rule_ids(g))


def test_dimension_only_violation_uses_the_worst_dimension(rules):
    g = grade("157", 40000, rules, length_m=18.5, width_m=3.9)
    assert (g.over, g.action, g.fine_min_yuan, g.fine_max_yuan) == (True, "fine", 1000, 3000)
    within = grade("157", 40000, rules, height_m=3.9, width_m=2.5, length_m=18)
    assert (within.over, within.action, within.fine_min_yuan) == (False, "none", None)


def test_zhejiang_takes_the_national_dimension_scale(rules):
    g = grade("12", 10000, rules, benchmark="zhejiang", height_m=4.1)
    assert (g.fine_min_yuan, g.fine_max_yuan) == (0, 200)
    assert "national.dimensions.minor" in rule_ids(g)


def test_several_violations_are_capped_together(rules):
    g = grade("157", 49000 + 70000, rules, height_m=4.8)
    assert (g.fine_min_yuan, g.fine_max_yuan, g.fine_yuan) == (30000, 30000, 30000)
    assert rule_ids(g)[-1] == "national.total-cap"


def test_grade_many_gives_arrays(rules):
    table = grade_many(np.array(["157", "12", "157", "1127"]), [55400, 18500, 49000, 47000], rules)
    assert table.limit_kg.tolist() == [49000, 18000, 49000, 46000]
    assert table.action.tolist() == ["fine", "warning", "none", "warning"]
    assert table.excess_kg.tolist() == [6400, 500, 0, 1000]
    assert table.fine_yuan[0] == 3000 and all(math.isnan(x) for x in table.fine_yuan[1:])
    assert table.row(0).fine_yuan == 3000 and len(table) == 4


def test_grade_many_refuses_bad_masses_naming_the_vehicle(rules):
    with pytest.raises(RuleError, match=r"gross mass of vehicle 1 must be a finite number"):
        grade_many(["157", "157"], [50000, -3], rules)
    with pytest.raises(RuleError, match=r"gross_kg has shape \(1,\) but there are 2 axle codes"):
        grade_many(["157", "157"], [50000], rules)


def test_to_dict_is_plain_json_data(rules):
    data = grade("157", 55400, rules).to_dict()
    assert data["excess_kg"] == data["graded_excess_kg"] == 6400
    assert data["rules"][1]["source"]["article"] == "第三条"
    assert data["rules_digest"] == rules.digest
