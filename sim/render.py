"""Render vehicle truth into the int16 samples a strip-sensor digitiser would deliver.

Physics, kept simple but complete enough to test the signal loop honestly:

- a tyre's contact patch has length ``l = W / (p * b)`` (wheel load over inflation
  pressure times contact width) and loads the strip in proportion to the overlap of the
  patch with the strip, so the force on a strip of width ``w`` is ``W * overlap / l``;
  its time integral is ``W * w / v``, the basis of the area method;
- the wheel load varies with body bounce and axle hop (:class:`sim.traffic.Dynamics`);
- laterally, each side's contact spans ``b`` around the wheel; the part over each half
  strip (of this lane or the next) loads that channel;
- sensitivity drifts with temperature; each channel has its own baseline, a slow drift
  and white noise; the output saturates at the int16 range.

Given a :class:`sim.sensor.SensorResponse`, the sensor is the one in the road instead:
each wheel pass is scaled by the response at the pavement temperature and speed of that
pass and by the gain of its channel, both from the vehicle's :class:`sim.sensor.SensorState`
(without one, the renderer's temperature and unit gains). Without a response the output
is what it always was.
"""

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from drivers.strips import StripArray
from sim.fleet import CAR_TYRE_WIDTH_M, TYRE_WIDTH_M
from sim.sensor import SensorResponse, SensorState
from sim.traffic import G_MPS2, VehicleTruth

NOISE_CHUNK = 1000
"""Samples per independently seeded chunk of noise."""


@dataclass(frozen=True)
class SensorNoise:
    """Electrical imperfections of the digitiser channels."""

    noise_counts: float = 6.0
    baseline_counts: tuple[float, float] = (300.0, 700.0)
    drift_counts: float = 40.0
    drift_period_s: tuple[float, float] = (120.0, 600.0)

    @classmethod
    def none(cls) -> "SensorNoise":
        """A perfect digitiser: fixed baseline, no drift, no noise."""
        return cls(noise_counts=0.0, baseline_counts=(500.0, 500.0), drift_counts=0.0)


@dataclass(frozen=True)
class WheelPass:
    """One side of one axle crossing one row: the unit the renderer draws."""

    vehicle: VehicleTruth
    axle: int
    t_c: float          # when the patch centre is over the strip centre
    speed_mps: float
    accel_mps2: float
    load_n: float       # static wheel load
    patch_m: float      # contact patch length
    channels: np.ndarray  # channels this wheel loads
    fractions: np.ndarray  # share of the wheel load on each of them


def _lateral_shares(site: StripArray, lane: int, centre_m: float, width_m: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(half-strip index across the road, share of the contact over it)."""
    half_w = site.lane_width_m / 2
    left = lane * site.lane_width_m + site.lane_width_m / 2 + centre_m - width_m / 2
    edges = np.arange(site.lanes * 2 + 1) * half_w
    lo = np.clip(edges[:-1], left, left + width_m)
    hi = np.clip(edges[1:], left, left + width_m)
    share = (hi - lo) / width_m
    idx = np.flatnonzero(share > 1e-6)
    return idx, share[idx]


def wheel_passes(site: StripArray, v: VehicleTruth) -> list[WheelPass]:
    """Every (axle, side, row) crossing of one vehicle."""
    passes = []
    rows = site.row_positions_m()
    for axle in range(v.n_axles):
        wheel_n = v.axle_loads_kg[axle] * G_MPS2 / 2
        width = CAR_TYRE_WIDTH_M if v.is_car else TYRE_WIDTH_M[v.tyres[axle]]
        patch = wheel_n / (v.tyre_pressure_pa * width)
        for row, row_m in enumerate(rows):
            travelled = row_m + v.axle_pos_m[axle]
            t_axle = float(v.time_at(np.array(travelled)))
            speed = float(v.speed_at(np.array(travelled)))
            lateral = v.lateral_offset_m + v.lateral_speed_mps * (t_axle - v.t0_s)
            yaw = np.arctan2(v.lateral_speed_mps, speed)  # heading off the lane's axis
            for side in (-1.0, 1.0):
                halves, shares = _lateral_shares(site, v.lane, lateral + side * v.track_m / 2,
                                                 width)
                if halves.size == 0:
                    continue
                lane_of, half = np.divmod(halves, 2)
                channels = (lane_of * site.rows + row) * 2 + half
                # turned by the yaw, the wheel on the side it moves towards runs ahead
                t_c = t_axle - side * np.sin(yaw) * v.track_m / 2 / speed
                passes.append(WheelPass(v, axle, t_c, speed, v.accel_mps2, wheel_n, patch,
                                        channels, shares))
    return passes


def _force(p: WheelPass, t_s: np.ndarray, strip_m: float) -> np.ndarray:
    """Force on the strip (N) at times ``t_s`` during one wheel pass."""
    dt = t_s - p.t_c
    x = p.speed_mps * dt + 0.5 * p.accel_mps2 * dt * dt  # patch centre past strip centre
    overlap = np.clip(np.minimum(x + p.patch_m / 2, strip_m / 2)
                      - np.maximum(x - p.patch_m / 2, -strip_m / 2), 0.0, None)
    return p.load_n * p.vehicle.dynamics.factor(p.axle, t_s) * overlap / p.patch_m


class Renderer:
    """Turns a list of vehicles into sample blocks, block by block, reproducibly."""

    def __init__(self, site: StripArray, vehicles: list[VehicleTruth], seed: int = 0,
                 noise: SensorNoise | None = None, temperature_c: float = 20.0, *,
                 response: SensorResponse | None = None,
                 states: Mapping[int, SensorState] | None = None) -> None:
        if states is not None and response is None:
            raise ValueError("sensor states need a response to be applied with")
        self.site = site
        self.noise = noise or SensorNoise()
        self.temperature_c = temperature_c
        self.seed = seed
        rng = np.random.default_rng([seed, 1])
        n = site.n_channels
        self._base = rng.uniform(*self.noise.baseline_counts, n)
        self._drift_period = rng.uniform(*self.noise.drift_period_s, n)
        self._drift_phase = rng.uniform(0, 2 * np.pi, n)
        passes = [p for v in vehicles for p in wheel_passes(site, v)]
        half = np.array([(p.patch_m + site.strip_width_m) / (2 * p.speed_mps) for p in passes])
        t_c = np.array([p.t_c for p in passes])
        order = np.argsort(t_c - half)
        self._passes = [passes[i] for i in order]
        self._start = (t_c - half)[order]
        self._end = (t_c + half)[order]
        self._weights: list[np.ndarray] | None = None
        if response is not None:
            self._weights = [self._pass_weights(p, response, states or {})
                             for p in self._passes]

    def _pass_weights(self, p: WheelPass, response: SensorResponse,
                      states: Mapping[int, SensorState]) -> np.ndarray:
        """Counts per newton on each channel of a pass: the site's scale times the
        response at the temperature and speed of the pass times each channel's gain,
        times the share of the wheel on it."""
        state = states.get(p.vehicle.vehicle_id)
        temperature = state.temperature_c if state is not None else self.temperature_c
        gains = state.channel_gain[p.channels] if state is not None else 1.0
        scale = self.site.counts_per_newton * response.factor(temperature, p.speed_mps * 3.6)
        return scale * gains * p.fractions

    def render(self, start: int, n_samples: int) -> np.ndarray:
        """Samples ``[start, start + n_samples)`` of every channel, ``(n_channels, n)`` int16."""
        site, fs = self.site, self.site.fs_hz
        t = (start + np.arange(n_samples)) / fs
        drift = self.noise.drift_counts * np.sin(
            2 * np.pi * t[None, :] / self._drift_period[:, None] + self._drift_phase[:, None])
        out = self._base[:, None] + drift
        gain = site.sensitivity(self.temperature_c)
        t0, t1 = start / fs, (start + n_samples) / fs
        first = np.searchsorted(self._start, t0 - 5.0)
        last = np.searchsorted(self._start, t1)
        for i in range(first, last):
            if self._end[i] < t0:
                continue
            p = self._passes[i]
            lo = max(math.ceil(self._start[i] * fs), start)
            hi = min(math.floor(self._end[i] * fs) + 1, start + n_samples)
            if hi <= lo:
                continue
            if self._weights is not None:  # the sensor in the road
                force = _force(p, np.arange(lo, hi) / fs, site.strip_width_m)
                out[p.channels, lo - start:hi - start] += (self._weights[i][:, None]
                                                           * force[None, :])
                continue
            counts = gain * _force(p, np.arange(lo, hi) / fs, site.strip_width_m)
            out[p.channels, lo - start:hi - start] += p.fractions[:, None] * counts[None, :]
        if self.noise.noise_counts > 0:
            out += self._noise(start, n_samples)
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)

    def _noise(self, start: int, n_samples: int) -> np.ndarray:
        """White noise for samples ``[start, start + n)``, the same however it is split:
        drawn in fixed chunks, each from its own seed."""
        chunk = NOISE_CHUNK
        first, last = start // chunk, (start + n_samples - 1) // chunk
        parts = [np.random.default_rng([self.seed, 2, c]).normal(
                     0.0, self.noise.noise_counts, (self.site.n_channels, chunk))
                 for c in range(first, last + 1)]
        noise = np.concatenate(parts, axis=1)
        return noise[:, start - first * chunk: start - first * chunk + n_samples]

    def blocks(self, duration_s: float, block_s: float = 1.0) -> Iterator[np.ndarray]:
        """The whole recording as consecutive blocks of ``block_s`` seconds."""
        total = round(duration_s * self.site.fs_hz)
        step = round(block_s * self.site.fs_hz)
        for start in range(0, total, step):
            yield self.render(start, min(step, total - start))


def render(site: StripArray, vehicles: list[VehicleTruth], duration_s: float, *,
           seed: int = 0, noise: SensorNoise | None = None, temperature_c: float = 20.0,
           response: SensorResponse | None = None,
           states: Mapping[int, SensorState] | None = None) -> np.ndarray:
    """The whole recording at once, ``(n_channels, duration_s * fs_hz)`` int16."""
    r = Renderer(site, vehicles, seed, noise, temperature_c, response=response, states=states)
    return np.concatenate(list(r.blocks(duration_s, block_s=10.0)), axis=1)
