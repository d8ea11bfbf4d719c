"""Properties of the law layer, checked on many seeded random inputs (hypothesis,
derandomized): the fast path equals its one-vehicle wrapper, fines respect the cap and never
fall as mass rises, and axle codes round-trip through measured axles."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from overload import axle_code_from_axles, grade, grade_many, load_rules, parse_axle_code

RULES = load_rules()
SEEDED = settings(derandomize=True, database=None, deadline=None, max_examples=150)
CODES = [e.code for e in RULES.axle_codes.vehicles.codes] + ["156", "1175", "13", "5", "22"]
MASS = st.one_of(
    st.floats(min_value=0, max_value=160_000, allow_nan=False),
    st.integers(min_value=0, max_value=160).map(lambda t: t * 1000.0),
    st.integers(min_value=14_000, max_value=60_000).map(float),
)
OPTIONS = st.fixed_dictionaries(
    {
        "benchmark": st.sampled_from(sorted(RULES.benchmarks)),
        "tolerance": st.sampled_from(["none", "highway-entrance-5pct", "mpe"]),
        "accuracy_class": st.sampled_from([0.2, 1, 2, 5, 10]),
        "rounding": st.sampled_from([None, "floor", "ceil", "pro_rata"]),
    }
)
SEVERITY = {"none": 0, "education": 1, "warning": 2, "fine": 3}


@SEEDED
@given(st.lists(st.tuples(st.sampled_from(CODES), MASS), min_size=1, max_size=25), OPTIONS)
def test_grade_many_equals_grade_row_by_row(vehicles, options):
    codes = [code for code, _ in vehicles]
    masses = [mass for _, mass in vehicles]
    table = grade_many(codes, np.array(masses), RULES, **options)
    for i, (code, mass) in enumerate(vehicles):
        assert table.row(i) == grade(code, mass, RULES, **options)


@SEEDED
@given(st.lists(st.tuples(st.sampled_from(CODES), MASS), min_size=1, max_size=40), OPTIONS)
def test_fines_never_exceed_the_cap(vehicles, options):
    table = grade_many([c for c, _ in vehicles], [m for _, m in vehicles], RULES, **options)
    cap = RULES.benchmark(options["benchmark"]).mass.cap.cap_yuan
    fines = table.fine_yuan[~np.isnan(table.fine_yuan)]
    assert np.all((fines > 0) & (fines <= cap))
    assert np.array_equal(table.action == "fine", ~np.isnan(table.fine_yuan))


@SEEDED
@given(st.sampled_from(CODES), st.lists(MASS, min_size=2, max_size=40), OPTIONS)
def test_fine_and_action_never_fall_as_mass_rises(code, masses, options):
    masses = np.sort(np.array(masses))
    table = grade_many([code] * len(masses), masses, RULES, **options)
    fines = np.nan_to_num(table.fine_yuan, nan=0.0)
    assert np.all(np.diff(fines) >= 0)
    severity = np.array([SEVERITY[a] for a in table.action])
    assert np.all(np.diff(severity) >= 0)
    assert np.all(np.diff(table.excess_kg) >= 0)


DIGITS = sorted(RULES.digits)


def _axles_for(code, data, canonical):
    """Spacings and tyres of a vehicle with ``code``'s groups (random but consistent)."""
    threshold = RULES.group_threshold_m
    spacings, tyres = [], []
    for n, group in enumerate(parse_axle_code(code, RULES).groups):
        if n:
            spacings.append(data.draw(st.floats(threshold, 12.0)))
        spacings += [
            data.draw(st.floats(0.5, threshold, exclude_max=True)) for _ in range(group.axles - 1)
        ]
        group_tyres = list(group.axle_tyres)
        if not canonical:
            group_tyres = data.draw(st.permutations(group_tyres))
            group_tyres = [
                data.draw(st.sampled_from(["single", "wide_base"])) if t != "dual" else t
                for t in group_tyres
            ]
        tyres += group_tyres
    return spacings, tyres


@SEEDED
@given(st.text(alphabet=DIGITS, min_size=1, max_size=6), st.data())
def test_code_round_trips_through_measured_axles(code, data):
    spacings, tyres = _axles_for(code, data, canonical=True)
    assert axle_code_from_axles(spacings, tyres, RULES) == code


@SEEDED
@given(st.text(alphabet=DIGITS, min_size=1, max_size=6), st.data())
def test_group_structure_survives_any_tyre_detail(code, data):
    spacings, tyres = _axles_for(code, data, canonical=False)
    rebuilt = parse_axle_code(axle_code_from_axles(spacings, tyres, RULES), RULES)
    assert [g.axles for g in rebuilt.groups] == [
        g.axles for g in parse_axle_code(code, RULES).groups
    ]
    assert rebuilt.axle_tyres() != () and len(rebuilt.axle_tyres()) == len(tyres)
