"""The sensor as it is in the road: its response to temperature and speed, the climate it
lies in, the drift of its channels, and how the renderer, the reference runs and the
sampled days carry them into the signal."""

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest
from pydantic import ValidationError

from drivers.strips import StripArray
from sim.days import SLOT_S, DayTraffic, sample_day
from sim.fleet import FLEET
from sim.reference import ReferenceTruck, default_trucks, reference_runs
from sim.render import Renderer, SensorNoise, render
from sim.sensor import SENSOR_TYPES, Climate, GainDrift, SensorResponse, SensorState
from sim.traffic import G_MPS2, Dynamics, TrafficSettings, VehicleTruth

SITE = StripArray(lanes=1)
BASE = 500.0  # SensorNoise.none()'s baseline
QUARTZ, POLYMER = SENSOR_TYPES["quartz"], SENSOR_TYPES["piezo_polymer"]


# --- response ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SENSOR_TYPES))
def test_every_sensor_type_is_one_at_its_references_and_says_where_its_numbers_come_from(
        name):
    r = SENSOR_TYPES[name]
    assert r.name == name
    assert r.factor(r.reference_temp_c, r.reference_speed_kmh) == 1.0
    assert len(r.source) > 20
    if name == "piezo_polymer":  # no data sheet behind these figures: it must say so
        assert r.source.startswith("assumption")


def test_quartz_hardly_feels_temperature_and_not_speed():
    assert QUARTZ.factor(40.0, 60.0) == pytest.approx(1 - 0.0002 * 20, abs=1e-12)
    assert QUARTZ.factor(-10.0, 60.0) == pytest.approx(1 + 0.0002 * 30, abs=1e-12)
    assert QUARTZ.factor(20.0, 100.0) == QUARTZ.factor(20.0, 30.0) == 1.0
    # over a whole year of pavement (-10..60 °C) quartz moves by less than 1.5 %
    assert 1 - QUARTZ.factor(60.0, 90.0) < 0.015


def test_polymer_loses_sensitivity_when_warm_along_a_curve_and_with_speed():
    cold, mild, hot = (POLYMER.factor(t, 60.0) for t in (0.0, 20.0, 40.0))
    assert cold == pytest.approx(1 + 0.05 + 0.016)    # -0.25 %/°C × -20 °C, +0.004 %/°C² × 400
    assert hot == pytest.approx(1 - 0.05 + 0.016)
    assert cold > mild > hot
    assert cold + hot > 2 * mild                      # convex: the quadratic term
    assert POLYMER.factor(20.0, 80.0) == pytest.approx(1 - 0.0008 * 20)
    assert POLYMER.factor(20.0, 40.0) == pytest.approx(1 + 0.0008 * 20)
    # the effects multiply: a hot, fast pass reads lower than either alone
    assert POLYMER.factor(40.0, 80.0) == pytest.approx(hot * POLYMER.factor(20.0, 80.0))
    # and the polymer's summer-to-winter swing is an order above quartz's
    assert (POLYMER.factor(0, 60) - POLYMER.factor(40, 60)) > 10 * (
        QUARTZ.factor(0, 60) - QUARTZ.factor(40, 60))


def test_a_response_refuses_coefficients_no_strip_has_and_never_turns_negative():
    with pytest.raises(ValidationError):
        SensorResponse(name="x", temp_linear_per_c=0.5, source="typo: percent as fraction")
    with pytest.raises(ValidationError):
        SensorResponse(name="x", temp_linear_per_c=0.0, source="")
    assert POLYMER.factor(200.0, 300.0) > 0


# --- climate ----------------------------------------------------------------------------

def test_the_pavement_is_warmest_at_the_warmest_hour_and_day():
    calm = Climate(noise_c=0.0)
    daily, yearly = (Climate(noise_c=0.0, yearly_amplitude_c=0.0),
                     Climate(noise_c=0.0, daily_amplitude_c=0.0))
    day = datetime(2026, 5, 10)
    minutes = [day + timedelta(minutes=m) for m in range(24 * 60)]
    hottest = max(minutes, key=daily.pavement_c)
    assert (hottest.hour, hottest.minute) == (14, 0)
    assert min(minutes, key=daily.pavement_c).hour == 2
    assert max(minutes, key=calm.pavement_c).hour == 14     # in May, spring warms it on
    days = [datetime(2026, 1, 1) + timedelta(days=d) for d in range(365)]
    warmest = max(days, key=yearly.pavement_c)
    assert warmest.date() == date(2026, 7, 21)             # day 201 after 1 January
    assert calm.pavement_c(datetime(2026, 7, 20, 14)) == pytest.approx(18 + 13 + 8, abs=0.1)
    assert calm.pavement_c(datetime(2026, 1, 18, 2)) == pytest.approx(18 - 13 - 8, abs=0.1)


def test_pavement_temperature_stays_in_its_bounds_and_its_weather_is_seeded():
    climate = Climate()
    hours = [datetime(2026, 1, 1) + timedelta(hours=h) for h in range(0, 365 * 24, 5)]
    temps = np.array([climate.pavement_c(t) for t in hours])
    bound = climate.yearly_amplitude_c + climate.daily_amplitude_c + climate.noise_c
    assert np.all(np.abs(temps - climate.mean_c) <= bound + 1e-9)
    assert temps.max() > 35 and temps.min() < 0     # a whole year's range, both sides of 0
    calm = np.array([Climate(noise_c=0.0).pavement_c(t) for t in hours])
    weather = temps - calm
    assert 0.1 < np.abs(weather).max() <= climate.noise_c
    other = np.array([Climate(seed=9).pavement_c(t) for t in hours])
    assert np.abs(other - temps).max() > 0.1
    assert climate.pavement_c(hours[7]) == Climate().pavement_c(hours[7])


def test_an_aware_time_is_read_in_china_time():
    climate = Climate()
    utc = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)
    assert climate.pavement_c(utc) == pytest.approx(climate.pavement_c(datetime(2026, 7, 1, 14)))


# --- drift ------------------------------------------------------------------------------

def test_channel_gains_are_the_same_for_the_same_seed_and_day_and_differ_otherwise():
    drift = GainDrift()
    a, b = drift.channel_gains(16, 37.25, seed=4), drift.channel_gains(16, 37.25, seed=4)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16,)
    assert np.abs(drift.channel_gains(16, 37.25, seed=5) - a).max() > 1e-3
    # a channel's gain does not depend on how many channels the site has
    np.testing.assert_array_equal(drift.channel_gains(4, 37.25, seed=4), a[:4])
    with pytest.raises(ValueError, match="before the installation"):
        drift.channel_gains(4, -1.0, seed=4)


def test_channel_gains_move_continuously_through_the_day():
    drift = GainDrift()
    g10, g11 = drift.channel_gains(8, 10.0, 1), drift.channel_gains(8, 11.0, 1)
    np.testing.assert_allclose(drift.channel_gains(8, 10.5, 1), (g10 + g11) / 2, rtol=1e-12)
    near = drift.channel_gains(8, 63.999, 1) - drift.channel_gains(8, 64.001, 1)
    assert np.abs(near).max() < 1e-5                # across a chunk of the random walk, too
    assert np.abs(g11 - g10).max() < 0.003          # a day moves a gain by tenths of a percent


def test_gains_start_spread_and_lose_the_stated_rate_on_average():
    drift = GainDrift()
    start = drift.channel_gains(400, 0.0, seed=2, channels_per_lane=400)  # one lane
    assert start.std() / start.mean() == pytest.approx(drift.install_sd, rel=0.15)
    later = drift.channel_gains(400, 90.0, seed=2, channels_per_lane=400)
    change = later / start - 1
    assert change.mean() == pytest.approx(90 * drift.rate_mean_per_day, abs=0.002)  # -3.6 %
    still = GainDrift(lane_sd=0.0, install_sd=0.0, rate_mean_per_day=0.0, rate_sd_per_day=0.0,
                      walk_sd_per_day=0.0)
    np.testing.assert_array_equal(still.channel_gains(8, 50.0, seed=2), np.ones(8))


def test_the_channels_of_a_lane_share_its_bedding_factor():
    drift = GainDrift(install_sd=0.0, rate_mean_per_day=0.0, rate_sd_per_day=0.0,
                      walk_sd_per_day=0.0)
    gains = drift.channel_gains(1600, 0.0, seed=3, channels_per_lane=4).reshape(400, 4)
    np.testing.assert_array_equal(gains, gains[:, :1].repeat(4, axis=1))  # one per lane
    assert gains[:, 0].mean() == pytest.approx(1.0, abs=0.01)
    assert gains[:, 0].std() == pytest.approx(drift.lane_sd, rel=0.15)
    assert np.abs(gains - 1).max() <= 3 * drift.lane_sd + 1e-12       # clipped at ±3σ
    with pytest.raises(ValueError, match="channels_per_lane"):
        drift.channel_gains(4, 1.0, seed=3, channels_per_lane=0)


# --- renderer ---------------------------------------------------------------------------

def truck(speed_mps: float = 20.0, vehicle_id: int = 0) -> VehicleTruth:
    """A two-axle truck without bounce, front axle over the first row at t = 1 s."""
    return VehicleTruth(
        vehicle_id=vehicle_id, lane=0, name="test truck", code="12", t0_s=1.0,
        speed_mps=speed_mps, accel_mps2=0.0, axle_pos_m=np.array([0.0, 4.5]),
        axle_loads_kg=np.array([6_000.0, 10_000.0]), tyres=("single", "dual"),
        tyre_pressure_pa=830e3, track_m=1.95, lateral_offset_m=0.0, lateral_speed_mps=0.0,
        dynamics=Dynamics())


def channel_areas(x: np.ndarray, site: StripArray = SITE) -> np.ndarray:
    """Each channel's samples above the noiseless baseline, integrated: counts·s."""
    return (x.astype(np.float64) - BASE).sum(axis=1) / site.fs_hz


def test_with_a_response_every_pulse_area_scales_by_its_factor():
    v = truck(speed_mps=20.0)                                    # 72 km/h
    plain = channel_areas(render(SITE, [v], 4.0, noise=SensorNoise.none()))
    state = {0: SensorState(0.0, np.ones(SITE.n_channels))}
    cold = channel_areas(render(SITE, [v], 4.0, noise=SensorNoise.none(), response=POLYMER,
                                states=state))
    f = POLYMER.factor(0.0, 72.0)
    assert f == pytest.approx(1.066 * (1 - 0.0008 * 12))
    assert np.all(plain > 100)                                   # every channel had wheels
    np.testing.assert_allclose(cold / plain, f, rtol=5e-4)
    # and the area is still the area method's: load × strip width / speed × scale
    wheels = (6_000.0 + 10_000.0) * G_MPS2 / 2 * SITE.strip_width_m / 20.0
    np.testing.assert_allclose(cold.reshape(SITE.rows, 2).sum(axis=1), 2 * wheels * f,
                               rtol=2e-3)


def test_the_factor_follows_each_pass_speed():
    slow, fast = truck(10.0), truck(25.0)
    ratios = []
    for v in (slow, fast):
        plain = channel_areas(render(SITE, [v], 4.0, noise=SensorNoise.none()))
        resp = channel_areas(render(SITE, [v], 4.0, noise=SensorNoise.none(), response=POLYMER))
        ratios.append((resp / plain).mean())
    np.testing.assert_allclose(ratios, [POLYMER.factor(20.0, 36.0), POLYMER.factor(20.0, 90.0)],
                               rtol=5e-4)


def test_a_channel_gain_reaches_only_its_channel():
    v = truck()
    gains = np.ones(SITE.n_channels)
    gains[2] = 1.1                                               # row 1, left half
    flat = channel_areas(render(SITE, [v], 4.0, noise=SensorNoise.none(), response=QUARTZ,
                                states={0: SensorState(20.0, np.ones(SITE.n_channels))}))
    one = channel_areas(render(SITE, [v], 4.0, noise=SensorNoise.none(), response=QUARTZ,
                               states={0: SensorState(20.0, gains)}))
    np.testing.assert_allclose(one / flat, gains, rtol=5e-4)


def test_without_a_state_the_renderer_temperature_and_unit_gains_are_used():
    v = truck(speed_mps=60 / 3.6)
    at = {t: channel_areas(render(SITE, [v], 4.0, noise=SensorNoise.none(), temperature_c=t,
                                  response=POLYMER)) for t in (20.0, 40.0)}
    np.testing.assert_allclose(at[40.0] / at[20.0], POLYMER.factor(40.0, 60.0), rtol=5e-4)
    other = {1: SensorState(-20.0, np.full(SITE.n_channels, 2.0))}  # another vehicle's state
    same = channel_areas(render(SITE, [v], 4.0, noise=SensorNoise.none(), temperature_c=40.0,
                                response=POLYMER, states=other))
    np.testing.assert_array_equal(same, at[40.0])


def test_states_without_a_response_are_refused_and_no_response_draws_as_before():
    v = truck()
    with pytest.raises(ValueError, match="need a response"):
        Renderer(SITE, [v], states={0: SensorState(20.0, np.ones(SITE.n_channels))})
    a = Renderer(SITE, [v], seed=3, temperature_c=31.0).render(0, 30_000)
    b = Renderer(SITE, [v], seed=3, temperature_c=31.0, response=None).render(0, 30_000)
    np.testing.assert_array_equal(a, b)
    ideal = Renderer(SITE, [v], seed=3, response=SENSOR_TYPES["ideal"]).render(0, 30_000)
    assert np.abs(ideal.astype(int) - Renderer(SITE, [v], seed=3).render(0, 30_000)).max() <= 1


# --- reference runs ---------------------------------------------------------------------

def test_the_default_trucks_are_a_loaded_rigid_and_a_loaded_six_axle_semi():
    rigid, semi = default_trucks()
    fleet = {c.code: c for c in FLEET}
    assert (rigid.code, rigid.n_axles, semi.code, semi.n_axles) == ("12", 2, "157", 6)
    assert 16_000 <= rigid.gvw_kg <= 18_000 and 45_000 <= semi.gvw_kg <= 49_000
    for t in (rigid, semi):
        assert t.tyres == fleet[t.code].tyres
        assert all(lo <= s <= hi for s, (lo, hi) in zip(t.spacings_m, fleet[t.code].spacings_m,
                                                          strict=True))
    with pytest.raises(ValidationError, match="spacings"):
        ReferenceTruck(name="x", code="12", static_axle_kg=(6e3, 9e3), spacings_m=(4.0, 1.3),
                       tyres=("single", "dual"))


def test_reference_runs_drive_every_truck_over_every_lane_at_the_asked_speeds():
    site = StripArray(lanes=2)
    trucks = default_trucks()
    runs = reference_runs(site, trucks, runs_per_truck=10, speeds_kmh=(40, 50, 60, 70, 80),
                          seed=1)
    assert len(runs) == 2 * 2 * 10
    assert [v.vehicle_id for v in runs] == list(range(40))
    by = defaultdict(list)
    for v in runs:
        by[(v.code, v.lane)].append(v)
    assert set(by) == {(t.code, lane) for t in trucks for lane in (0, 1)}
    for t in trucks:
        for lane in (0, 1):
            passes = by[(t.code, lane)]
            speeds = [round(v.speed_mps * 3.6, 6) for v in passes]
            assert speeds == [40, 50, 60, 70, 80] * 2
            for v in passes:   # the same static loads every run, as the scale weighed them
                np.testing.assert_array_equal(v.axle_loads_kg, t.static_axle_kg)
                assert v.bad is None and v.accel_mps2 == 0.0 and abs(v.lateral_offset_m) <= 0.2
            phases = {float(v.dynamics.bounce_phase[0]) for v in passes}
            assert len(phases) == len(passes)                   # each run bounces its own way
            assert all(v.dynamics.bounce_amp > 0 for v in passes)


def test_reference_runs_never_overlap_and_keep_to_the_lanes_asked():
    site = StripArray(lanes=3)
    runs = reference_runs(site, default_trucks(), lanes=[2], runs_per_truck=3,
                          speeds_kmh=(30, 90), seed=2)
    assert {v.lane for v in runs} == {2}
    assert [round(v.speed_mps * 3.6) for v in runs] == [30, 30, 90, 90, 30, 30]
    for a, b in pairwise(runs):
        leaves = float(a.time_at(np.array(a.axle_pos_m[-1] + site.row_positions_m()[-1])))
        assert b.t0_s - leaves >= 3.0
    again = reference_runs(site, default_trucks(), lanes=[2], runs_per_truck=3,
                           speeds_kmh=(30, 90), seed=2)
    assert [v.dynamics.hop_hz.tolist() for v in again] == [
        v.dynamics.hop_hz.tolist() for v in runs]
    with pytest.raises(ValueError, match="lanes"):
        reference_runs(site, default_trucks(), lanes=[3])


# --- sampled days -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def day() -> tuple[StripArray, DayTraffic]:
    site = StripArray(lanes=3)
    return site, sample_day(site, 40, date(2026, 3, 1), 24, seed=7)


def test_a_day_serves_every_lane_in_every_slot_and_spreads_its_slots_over_24_hours(day):
    site, d = day
    assert d.date == date(2026, 4, 10) and d.day == 40
    assert len(d.vehicles) == 24 * site.lanes and len(d.times) == 24
    assert d.duration_s == 24 * SLOT_S
    slots = defaultdict(list)
    for v in d.vehicles:
        slots[d.slot(v.t0_s)].append(v)
    assert sorted(slots) == list(range(24))
    assert all(sorted(v.lane for v in vs) == [0, 1, 2] for vs in slots.values())
    assert [t.hour for t in d.times] == list(range(24))          # one slot in every hour
    assert all(t.date() == d.date for t in d.times)
    assert not any(v.is_car for v in d.vehicles)
    assert [v.vehicle_id for v in d.vehicles] == list(range(len(d.vehicles)))
    assert [v.t0_s for v in d.vehicles] == sorted(v.t0_s for v in d.vehicles)


def test_the_vehicles_of_a_slot_share_its_time_temperature_and_gains(day):
    site, d = day
    climate, drift = Climate(), GainDrift()
    for v in d.vehicles:
        state, when = d.states[v.vehicle_id], d.when(v)
        assert state.temperature_c == d.temperature_at(v.t0_s) == climate.pavement_c(when)
        fraction = (when - datetime(2026, 4, 10)).total_seconds() / 86_400
        np.testing.assert_allclose(state.channel_gain,
                                   drift.channel_gains(site.n_channels, 40 + fraction, 7),
                                   rtol=1e-12)
    temps = np.array(d.temperatures_c)
    assert temps.max() - temps.min() > 10                         # the daily cycle shows
    by_slot = defaultdict(set)
    for v in d.vehicles:
        by_slot[d.slot(v.t0_s)].add(d.states[v.vehicle_id].temperature_c)
    assert all(len(t) == 1 for t in by_slot.values())


def test_passes_stay_inside_their_slot_and_never_overlap_in_a_lane():
    site = StripArray(lanes=4)
    busy = TrafficSettings(bad_share=0.5)     # many weaving and off-centre passes to place
    d = sample_day(site, 3, date(2026, 1, 1), 60, seed=1, settings=busy)
    assert sum(v.bad is not None for v in d.vehicles) > 40
    for v in d.vehicles:
        k = d.slot(v.t0_s)
        leaves = float(v.time_at(np.array(v.axle_pos_m[-1] + site.row_positions_m()[-1] + 1)))
        assert k * d.slot_s < v.t0_s and leaves < (k + 1) * d.slot_s - 1.0
        assert v.bad not in ("straddling", "tailgating")
    for k in range(60):   # a pass leaving its lane is never beside its neighbours' passes
        in_slot = [v for v in d.vehicles if d.slot(v.t0_s) == k]
        wide = [v for v in in_slot if v.bad in ("weaving", "off_centre")]
        assert len(wide) <= 1
        for w in wide:
            w_end = float(w.time_at(np.array(w.axle_pos_m[-1] + 2.0)))
            for v in in_slot:
                if abs(v.lane - w.lane) == 1:
                    assert v.t0_s > w_end


def test_a_day_is_the_same_for_the_same_seed_and_another_for_another(day):
    site, d = day
    again = sample_day(site, 40, date(2026, 3, 1), 24, seed=7)
    other = sample_day(site, 40, date(2026, 3, 1), 24, seed=8)
    assert [v.t0_s for v in again.vehicles] == [v.t0_s for v in d.vehicles]
    assert [v.gvw_kg for v in again.vehicles] == [v.gvw_kg for v in d.vehicles]
    assert again.times == d.times
    assert [v.gvw_kg for v in other.vehicles] != [v.gvw_kg for v in d.vehicles]
    next_day = sample_day(site, 41, date(2026, 3, 1), 24, seed=7)
    assert [v.gvw_kg for v in next_day.vehicles] != [v.gvw_kg for v in d.vehicles]


def test_a_rendered_day_carries_each_slots_sensor_into_its_pulses():
    site = StripArray(lanes=1)
    calm = TrafficSettings(bad_share=0.0, dynamics=False)
    d = sample_day(site, 200, date(2026, 1, 1), 3, seed=5, settings=calm)
    x = d.renderer(site, noise=SensorNoise.none()).render(0, round(d.duration_s * site.fs_hz))
    y = x.astype(np.float64) - BASE
    step = round(d.slot_s * site.fs_hz)
    for v in d.vehicles:
        k, state = d.slot(v.t0_s), d.states[v.vehicle_id]
        areas = y[:, k * step:(k + 1) * step].sum(axis=1) / site.fs_hz
        f = POLYMER.factor(state.temperature_c, v.speed_mps * 3.6)
        wheels = v.axle_loads_kg.sum() * G_MPS2 / 2 * site.strip_width_m / v.speed_mps
        np.testing.assert_allclose(areas, wheels * f * state.channel_gain, rtol=3e-3)
