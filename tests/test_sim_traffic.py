"""The traffic simulator: seeded, inside its duration, true to the fleet's data, and never
putting two vehicles in the same place."""

import itertools

import numpy as np
import pytest

from drivers.strips import StripArray
from sim.fleet import FLEET
from sim.traffic import BAD_DRIVING, TrafficSettings, VehicleTruth, generate_traffic

SITE = StripArray(lanes=3)
BY_CODE = {cls.code: cls for cls in FLEET}
SEEDS = (0, 1, 2)
BAD = TrafficSettings(bad_share=1.0)


def on_array(v: VehicleTruth, site: StripArray) -> tuple[float, float]:
    """From the front axle reaching the first row to the last axle leaving the last."""
    end = v.axle_pos_m[-1] + site.row_positions_m()[-1]
    return float(v.time_at(np.array(0.0))), float(v.time_at(np.array(end)))


def fields(v: VehicleTruth) -> dict:
    out = {}
    for name, value in vars(v).items():
        if name == "dynamics":
            out[name] = {k: np.asarray(x).tolist() for k, x in vars(value).items()}
        else:
            out[name] = value.tolist() if isinstance(value, np.ndarray) else value
    return out


@pytest.mark.parametrize("settings", [None, BAD], ids=["default", "all-bad"])
def test_the_same_seed_gives_the_same_traffic(settings):
    a = generate_traffic(SITE, 120.0, seed=5, settings=settings)
    b = generate_traffic(SITE, 120.0, seed=5, settings=settings)
    assert len(a) > 20
    assert [fields(v) for v in a] == [fields(v) for v in b]
    c = generate_traffic(SITE, 120.0, seed=6, settings=settings)
    assert [fields(v) for v in a] != [fields(v) for v in c]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("settings", [None, BAD], ids=["default", "all-bad"])
def test_every_vehicle_has_left_the_array_before_the_end(seed, settings):
    duration = 90.0
    vehicles = generate_traffic(SITE, duration, seed=seed, settings=settings)
    assert vehicles
    for v in vehicles:
        start, end = on_array(v, SITE)
        assert 0.0 < start < end < duration - 1.0
    assert [v.t0_s for v in vehicles] == sorted(v.t0_s for v in vehicles)
    assert [v.vehicle_id for v in vehicles] == list(range(len(vehicles)))
    assert {v.lane for v in vehicles} <= set(range(SITE.lanes))


@pytest.mark.parametrize("seed", SEEDS)
def test_vehicles_are_drawn_from_the_fleet(seed):
    vehicles = generate_traffic(SITE, 300.0, seed=seed, settings=BAD)
    assert len({v.code for v in vehicles}) >= 6
    for v in vehicles:
        cls = BY_CODE[v.code]
        assert (v.name, v.tyres, v.is_car, v.track_m) == (cls.name, cls.tyres, cls.is_car,
                                                          cls.track_m)
        assert v.n_axles == cls.n_axles == len(v.axle_loads_kg)
        assert v.axle_pos_m[0] == 0.0
        for spacing, (lo, hi) in zip(v.spacings_m, cls.spacings_m, strict=True):
            assert lo <= spacing <= hi
        assert np.all(v.axle_loads_kg > 0)
        lo_kmh, hi_kmh = cls.speed_kmh
        assert lo_kmh / 3.6 <= v.speed_mps <= hi_kmh / 3.6
        assert 0.9 * cls.tyre_pressure_kpa * 1e3 <= v.tyre_pressure_pa <= (
            1.1 * cls.tyre_pressure_kpa * 1e3)
        assert v.bad in BAD_DRIVING


def test_loads_follow_the_overload_settings():
    heavy = generate_traffic(SITE, 600.0, seed=1,
                             settings=TrafficSettings(overloaded_share=1.0, empty_share=0.0))
    trucks = [v for v in heavy if not v.is_car]
    assert len(trucks) > 30
    assert all(v.gvw_kg >= 0.999 * BY_CODE[v.code].rated_kg for v in trucks)
    assert max(v.gvw_kg / BY_CODE[v.code].rated_kg for v in trucks) <= 1.8 * 1.001
    empty = generate_traffic(SITE, 600.0, seed=1,
                             settings=TrafficSettings(overloaded_share=0.0, empty_share=1.0))
    trucks = [v for v in empty if not v.is_car]
    assert len(trucks) > 30
    for v in trucks:  # empty: at most 10 % over the empty mass, plus 5 % of the room left
        cls = BY_CODE[v.code]
        assert 0.9 * sum(cls.empty_axle_kg) <= v.gvw_kg
        assert v.gvw_kg <= 1.1 * sum(cls.empty_axle_kg) + 0.05 * cls.rated_kg


def overlaps_beside_straddlers(vehicles: list[VehicleTruth], *, straddlers_too: bool
                               ) -> list[tuple[int, int]]:
    """(straddler, vehicle) pairs on the array at once, the vehicle in the lane the
    straddler spills into."""
    found = []
    for s in (v for v in vehicles if v.bad == "straddling"):
        other = s.lane + (1 if s.lateral_offset_m > 0 else -1)
        s0, s1 = on_array(s, SITE)
        for v in vehicles:
            if v.lane != other or (v.bad == "straddling" and not straddlers_too):
                continue
            v0, v1 = on_array(v, SITE)
            if v0 < s1 and s0 < v1:
                found.append((s.vehicle_id, v.vehicle_id))
    return found


@pytest.mark.parametrize("seed", range(6))
def test_nothing_drives_beside_a_straddler_in_its_second_lane(seed):
    vehicles = generate_traffic(SITE, 300.0, seed=seed, settings=BAD)
    assert sum(v.bad == "straddling" for v in vehicles) >= 5
    assert overlaps_beside_straddlers(vehicles, straddlers_too=False) == []


def test_no_straddler_drives_beside_another_straddler_in_its_second_lane():
    for seed in range(6):
        vehicles = generate_traffic(SITE, 300.0, seed=seed, settings=BAD)
        assert overlaps_beside_straddlers(vehicles, straddlers_too=True) == [], seed


def test_straddlers_actually_reach_into_the_next_lane():
    vehicles = generate_traffic(SITE, 300.0, seed=0, settings=BAD)
    for s in (v for v in vehicles if v.bad == "straddling"):
        outer_wheel = abs(s.lateral_offset_m) + s.track_m / 2
        assert outer_wheel > SITE.lane_width_m / 2


def test_tailgaters_follow_closely_and_others_keep_the_gap():
    settings = TrafficSettings(bad_share=0.5)
    vehicles = generate_traffic(SITE, 600.0, seed=3, settings=settings)
    tailgaters = 0
    for lane in range(SITE.lanes):
        in_lane = [v for v in vehicles if v.lane == lane]
        for lead, v in itertools.pairwise(in_lane):
            gap_m = (v.t0_s - float(lead.time_at(np.array(lead.axle_pos_m[-1])))) * (
                lead.speed_at(np.array(lead.axle_pos_m[-1])))
            if v.bad == "tailgating":
                tailgaters += 1
                assert 2.0 < gap_m < 7.0
            else:
                assert gap_m > 0.9 * settings.min_gap_m
    assert tailgaters >= 5
