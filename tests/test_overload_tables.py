"""The rule tables as data: edits change results, broken tables fail loudly (Klipper's
SHOULD_FAIL style), and the engine holds no legal number and no foreign layer."""

import ast
import re
from pathlib import Path

import pytest
import yaml

import overload
from overload import RuleError, grade, load_rules, vehicle_limit

OVERLOAD_DIR = Path(overload.__file__).parent


def edit(folder: Path, name: str, old: str, new: str, count: int = 1) -> None:
    """Replace ``old`` by ``new`` in one table, insisting that ``old`` is there."""
    path = folder / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= count, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def load_error(folder: Path, **kwargs) -> str:
    with pytest.raises(RuleError) as err:
        load_rules(folder, **kwargs)
    return str(err.value)


# --- the law is data ---------------------------------------------------------------------


def test_changing_the_6_axle_limit_changes_the_grade(rules, rules_copy):
    edit(rules_copy, "limits.yaml", "limit_kg: 49000", "limit_kg: 48000")
    edited = load_rules(rules_copy)
    assert vehicle_limit("157", edited).limit_kg == 48000
    assert grade("157", 55400, edited).fine_yuan == 3500
    assert grade("157", 55400, rules).fine_yuan == 3000
    assert edited.digest != rules.digest


def test_changing_the_national_rate_changes_the_fine(rules_copy):
    edit(rules_copy, "benchmarks/national.yaml", "rate_yuan: 500", "rate_yuan: 600")
    assert grade("157", 55400, load_rules(rules_copy)).fine_yuan == 3600


def test_rounding_setting_comes_from_the_table(rules_copy):
    edit(rules_copy, "benchmarks/national.yaml", "rounding: floor", "rounding: pro_rata")
    g = grade("157", 55400, load_rules(rules_copy))
    assert (g.rounding, g.fine_yuan) == ("pro_rata", 3200)


def test_a_third_province_is_a_new_yaml_file(rules_copy):
    text = (rules_copy / "benchmarks/zhejiang.yaml").read_text(encoding="utf-8")
    text = text.replace("id: zhejiang", "id: hubei").replace("zhejiang.", "hubei.")
    text = text.replace("rate_yuan: 300", "rate_yuan: 400")
    (rules_copy / "benchmarks/hubei.yaml").write_text(text, encoding="utf-8")
    edited = load_rules(rules_copy)
    assert sorted(edited.benchmarks) == ["hubei", "national", "zhejiang"]
    assert grade("12", 25000, edited, benchmark="hubei").fine_yuan == 3 * 400


def test_digest_ignores_comments_but_not_values(rules, rules_copy):
    edit(rules_copy, "limits.yaml", "# Total-mass", "# A changed comment. Total-mass")
    assert load_rules(rules_copy).digest == rules.digest
    assert load_rules(rules_copy, vendor="generic").digest == rules.digest


def test_the_enforcement_table_is_in_the_book_and_its_digest(rules, rules_copy):
    table = rules.enforcement
    assert (table.notice_lead.value, table.repeat_window.value, table.repeat_more_than.value,
            table.report_within.value) == (15, 365, 3, 7)
    assert rules.rules["enforcement.notice-lead"].source.cite() == \
        "浙江省公路条例（2020） 第三十八条 第一款"
    assert rules.rules["enforcement.repeat-more-than"].source.article == "第六十六条"
    assert rules.rules["enforcement.report-within"].verify
    edit(rules_copy, "enforcement.yaml", "value: 15\n", "value: 10\n")
    edited = load_rules(rules_copy)
    assert edited.enforcement.notice_lead.value == 10 and edited.digest != rules.digest


def _legal_numbers() -> set[float]:
    """Every number the tables set under a key with a unit (kg, m, mm, yuan, percent...)."""
    unit = re.compile(r"(_kg|_m|_mm|_yuan)(_|$)|percent|fraction|^kg$")
    found: set[float] = set()

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, key if key.startswith("mpe_") else str(k))
        elif isinstance(node, list):
            for item in node:
                walk(item, key)
        elif isinstance(node, int | float) and not isinstance(node, bool) and unit.search(key):
            found.add(float(node))

    for path in Path(load_rules().folder).rglob("*.yaml"):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return found


def test_the_engine_holds_no_legal_number():
    # 0-3 are structure (indices, axles per group, decimals), not law.
    legal = _legal_numbers() - {0.0, 1.0, 2.0, 3.0}
    assert {49000.0, 3000.0, 500.0, 30000.0, 0.2, 18.1, 425.0} <= legal
    offenders = []
    for path in OVERLOAD_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            number = isinstance(node, ast.Constant) and type(node.value) in (int, float)
            if number and float(node.value) in legal:
                offenders.append(f"{path.name}:{node.lineno}: {node.value}")
    assert offenders == []


def test_the_engine_imports_no_other_layer():
    foreign = ("edge", "center", "drivers", "evidence", "sim", "calibration")
    for path in OVERLOAD_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            for name in names:
                assert name.split(".")[0] not in foreign, f"{path.name} imports {name}"


def test_every_rule_has_a_source_and_verify_rules_a_note(rules):
    assert len(rules.rules) > 40
    for rule in rules.rules.values():
        assert rule.source.act and rule.source.article
        assert not rule.verify or rule.note


def test_unknown_vendor_is_refused(rules_copy):
    assert "unknown vendor 'acme' for digits (known under 'vendors': generic)" in load_error(
        rules_copy, vendor="acme"
    )


# --- tables that must fail ---------------------------------------------------------------


def test_missing_field(rules_copy):
    edit(rules_copy, "limits.yaml", "    limit_kg: 49000\n", "")
    assert "limits.yaml: option 'mass_limits.6.limit_kg' is required but missing" in load_error(
        rules_copy
    )


def test_wrong_type(rules_copy):
    edit(rules_copy, "limits.yaml", "limit_kg: 49000", "limit_kg: heavy")
    message = load_error(rules_copy)
    assert "limits.yaml: option 'mass_limits.6.limit_kg' must be a valid number" in message
    assert "(got 'heavy')" in message


def test_negative_value(rules_copy):
    edit(rules_copy, "benchmarks/national.yaml", "rate_yuan: 500", "rate_yuan: -500")
    message = load_error(rules_copy)
    assert (
        "national.yaml: option 'mass.bands.1.rate_yuan' must be greater than or equal to 0 "
        "(got -500)"
    ) in message


def test_unknown_key(rules_copy):
    edit(rules_copy, "tolerance.yaml", "percent_of_limit: 5", "percent_of_limit: 5\n    pecent: 6")
    assert (
        "tolerance.yaml: option 'policies.1.pecent' is not a known option (a typo?)"
        in load_error(rules_copy)
    )


def test_duplicated_rule_id(rules_copy):
    edit(rules_copy, "benchmarks/zhejiang.yaml", "id: zhejiang.mass.cap", "id: national.mass.cap")
    message = load_error(rules_copy)
    assert re.search(
        r"zhejiang\.yaml: option 'mass\.cap\.id': rule id 'national\.mass\.cap' is "
        r"already used at .*national\.yaml: option 'mass\.cap\.id'",
        message,
    ), message


def test_unknown_digit_in_the_vehicle_map(rules_copy):
    edit(rules_copy, "axle_codes.yaml", '{code: "157",', '{code: "107",')
    assert re.search(
        r"axle_codes\.yaml: option 'vehicles\.codes\.13\.code' '107' uses digit '0', "
        r"not defined for vendor 'generic'",
        load_error(rules_copy),
    )


def test_vehicle_map_limit_must_match_its_kind(rules_copy):
    edit(
        rules_copy,
        "axle_codes.yaml",
        'limit: limit.combination.6.single-drive, description: "6×2 twin-steer tractor + tridem',
        'limit: limit.combination.6, description: "6×2 twin-steer tractor + tridem',
    )
    assert (
        "option 'vehicles.codes.16.limit' is 'limit.combination.6' but a combination with 6 "
        "axles and a single drive axle takes 'limit.combination.6.single-drive'"
    ) in load_error(rules_copy)


def test_vehicle_map_axle_count_must_match_the_digits(rules_copy):
    edit(
        rules_copy,
        "axle_codes.yaml",
        '{code: "157", kind: combination, axles: 6',
        '{code: "157", kind: combination, axles: 5',
    )
    assert "option 'vehicles.codes.13.axles' is 5 but code '157' has 6 axles" in load_error(
        rules_copy
    )


def test_verify_without_note(rules_copy):
    edit(
        rules_copy,
        "axle_codes.yaml",
        "  note: \"'about 1.9 m (configurable)' per the digest; "
        'no statute text at hand sets it."\n',
        "",
    )
    assert (
        "axle_codes.yaml: option 'group_threshold' 'verify: true' needs a 'note' saying what "
        "is unconfirmed"
    ) in load_error(rules_copy)


def test_spacing_bands_must_not_overlap(rules_copy):
    edit(rules_copy, "axle_limits.yaml", 'spacing_m: "[1.0, 1.3)"', 'spacing_m: "[1.0, 1.35)"')
    assert "tandem.2 must start where tandem.1 ends, without gap or overlap" in load_error(
        rules_copy
    )


def test_spacing_band_notation(rules_copy):
    edit(rules_copy, "axle_limits.yaml", 'spacing_m: "[1.0, 1.3)"', 'spacing_m: "1.0 to 1.3"')
    assert "option 'tandem.1.spacing_m' must be an interval like '[1.0, 1.3)'" in load_error(
        rules_copy
    )


def test_benchmark_bands_must_be_contiguous(rules_copy):
    edit(
        rules_copy,
        "benchmarks/zhejiang.yaml",
        "above: {fraction_of_limit: 0.5}",
        "above: {fraction_of_limit: 0.6}",
    )
    assert "zhejiang.yaml: option 'mass' bands.2 must start where bands.1 ends" in load_error(
        rules_copy
    )


def test_benchmark_id_must_match_its_file(rules_copy):
    edit(rules_copy, "benchmarks/zhejiang.yaml", "id: zhejiang\n", "id: zj\n")
    assert (
        "zhejiang.yaml: option 'id' must match the file name 'zhejiang' (got 'zj')"
        in load_error(rules_copy)
    )


def test_missing_table_and_bad_yaml(rules_copy):
    (rules_copy / "tolerance.yaml").unlink()
    assert load_error(rules_copy).endswith("tolerance.yaml: rule table is missing")
    (rules_copy / "tolerance.yaml").write_text("policies: [\n", encoding="utf-8")
    assert "tolerance.yaml: line 2 not valid YAML" in load_error(rules_copy)


@pytest.mark.parametrize(("old", "new", "message"), [
    ("value: 15\n", "value: -15\n",
     "option 'notice_lead.value' must be greater than or equal to 0 (got -15)"),
    ("value: 15\n", "value: fifteen\n", "option 'notice_lead.value' must be a valid integer"),
    ("value: 365\n", "value: 0\n",
     "option 'repeat_window.value' must be greater than or equal to 1 (got 0)"),
    ("unit: working_days", "unit: weeks",
     "option 'report_within.unit' must be 'working_days' (got 'weeks')"),
    ("value: 7\n", "value: 7\n  days: 8\n",
     "option 'report_within.days' is not a known option (a typo?) (got 8)"),
])
def test_a_bad_enforcement_value_is_one_line_naming_file_and_option(rules_copy, old, new,
                                                                     message):
    edit(rules_copy, "enforcement.yaml", old, new)
    error = load_error(rules_copy)
    assert "\n" not in error
    assert f"rules/enforcement.yaml: {message}" in error


def test_a_rules_folder_without_the_enforcement_table_is_refused(rules_copy):
    (rules_copy / "enforcement.yaml").unlink()
    assert load_error(rules_copy).endswith("enforcement.yaml: rule table is missing")
