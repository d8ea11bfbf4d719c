"""The calibration study on the simulated site, small enough for the suite: polymer strips
with their own gains, temperature and speed effects and drift, rendered, weighed by the
unit's signal loop, calibrated from two reference trucks, then watched over days.

The full figures (90 days, 100 trucks a lane a day) come from ``benchmarks/calibrate.py``
and are in README; these runs check the same code paths and the same claims on fewer
vehicles and a faster drift."""

from dataclasses import replace

import pytest

from benchmarks import calibrate
from benchmarks.calibrate import Study, run_study
from calibration.drift import DriftSettings
from sim.sensor import GainDrift


@pytest.fixture(scope="module")
def calibrated():
    return run_study(Study(days=0, per_lane=60))


def test_two_trucks_times_ten_runs_bring_the_traffic_to_class_a5(calibrated):
    before, after = calibrated.before, calibrated.after
    assert len(calibrated.runs) == 40  # 2 trucks x 10 runs x 2 lanes, every pass matched
    assert after.class_name == "A(5)"
    assert before.class_value > after.class_value, before.class_name
    gvw_before = before.criteria[0]
    gvw_after = after.criteria[0]
    assert gvw_after.d_min < gvw_before.d_min
    assert abs(gvw_after.mean) < abs(gvw_before.mean) or gvw_after.std < gvw_before.std


def test_the_chain_has_every_stage_approved_and_a_certificate(calibrated):
    chain = calibrated.chain_after
    assert [s.kind for s in chain.stages] == ["channel_gain", "speed_factor",
                                              "temperature_curve"]
    assert all(s.approved_by for s in chain.stages)
    assert chain.certificate is not None and chain.certificate.covers(Study().start)


def test_with_drift_the_alarm_fires_before_the_class_is_lost_and_tracking_corrects_it():
    """A drift eight times the study's, over 16 days with 20 tractors a lane a day: few
    steer axles, so the tracker is slow and noisy here; the 90-day figures are README's."""
    fast = Study(days=16, per_lane=40, visit_days=2,
                 drift=GainDrift(rate_mean_per_day=-0.003, rate_sd_per_day=0.0005),
                 drift_settings=DriftSettings(reference_days=2, window_days=3, min_axles=40,
                                              alarm_pct=1.0, propose_pct=0.5))
    outcome = run_study(fast)
    f = outcome.figures
    alarm = f["tracking off: first alarm day"]
    lost = f["tracking off: first day outside the class"]
    assert alarm is not None, f
    assert lost is None or alarm <= lost, f
    assert f["corrections approved"] >= 1, f
    last = outcome.daily[-1]  # the last week's gross weights
    assert abs(last["on"]["mean"]) < abs(last["off"]["mean"]) - 1.0, last


def test_a_cached_study_replays_its_days_and_a_changed_study_does_not_read_them(
        tmp_path, monkeypatch):
    """The cache lets tracker settings be compared on the same weighed days: a replay
    gives the very figures of the first run without rendering, another tracker setting
    reads the same days, and a study with another sensor has a key of its own."""
    study = Study(days=2, per_lane=20, seed=3)
    first = run_study(study, cache=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 3, files  # the calibration and two days

    def no_weighing(*_a, **_k):
        raise AssertionError("a cached day was weighed again")

    with monkeypatch.context() as m:
        m.setattr(calibrate, "weigh", no_weighing)
        replay = run_study(study, cache=tmp_path)
        assert replay.daily == first.daily
        run_study(replace(study, drift_settings=DriftSettings(estimator="window")),
                  cache=tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == files
        with pytest.raises(AssertionError, match="weighed again"):
            run_study(replace(study, drift=GainDrift(lane_sd=0.0)), cache=tmp_path)
    run_study(replace(study, drift=GainDrift(lane_sd=0.0)), cache=tmp_path)
    assert len(list(tmp_path.iterdir())) == 6
