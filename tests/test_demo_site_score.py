"""The real path's scoring against the simulation's truth, on made-up passes: the figures
the real-path tests assert on must be able to come out wrong."""

from zhichao.cli.demo_site import score_cases, unaccounted


def vehicle(plate, lane, t, *, code="157", gross=55_000.0, bad=None):
    return {"plate": plate, "lane": lane, "t0_s": t, "t0_mono_s": 100.0 + t, "code": code,
            "gross_kg": gross, "tyres": ["single"] + ["dual"] * 5, "bad": bad,
            "is_car": code == "11"}


def passed(lane, t, seq, flags=(), suspected=True):
    return {"lane": lane, "times": {"first_axle": 100.0 + t}, "sequence": seq,
            "flags": list(flags), "suspected": suspected}


def test_a_vehicle_without_a_pass_or_hidden_in_another_s_is_lost():
    truth = [vehicle("浙A11111", 1, 1.0), vehicle("浙A22222", 1, 1.3), vehicle("浙A33333", 2, 5.0)]
    assert len(unaccounted(truth, [passed(1, 1.1, 1)])) == 3  # two share, one has none
    assert unaccounted(truth, [passed(1, 1.1, 1, ["merged"]), passed(2, 5.0, 2)]) == []


def test_cases_are_scored_by_plate_and_by_the_vehicle_they_came_from():
    truth = [vehicle("浙A11111", 1, 1.0), vehicle("浙A22222", 2, 3.0),
             vehicle("浙A33333", 1, 9.0, gross=40_000.0)]   # within its 49 t limit
    passes = [passed(1, 1.0, 1), passed(2, 3.0, 2), passed(1, 9.0, 3)]
    right = [{"plate": "浙A11111", "sequences": [1]}, {"plate": "浙A22222", "sequences": [2]}]
    score = score_cases(truth, passes, right)
    assert (score.share, score.missed, score.wrong_plate_cases) == (1.0, [], [])
    swapped = [{"plate": "浙A22222", "sequences": [1]}, {"plate": "浙A11111", "sequences": [3]}]
    score = score_cases(truth, passes, swapped)   # each plate on another vehicle's case
    assert score.share == 0.0 and score.missed == ["浙A11111", "浙A22222"]
    assert len(score.wrong_plate_cases) == 2 and score.weighed_over == []
