"""The strip sensor as it is in the road: temperature, speed, and a gain that wanders.

A calibration made on a mild spring morning is wrong on a July afternoon and again in
January, and wrong in a different way a year later: the issue of a unit in service is
not the noise of one pass but how its scale moves. This module gives the simulator what
moves it, each part a setting with its source, or marked an assumption where there is
none:

- :class:`SensorResponse`: relative sensitivity by pavement temperature (linear plus
  quadratic around a reference) and by vehicle speed (linear around a reference speed),
  per sensor type (:data:`SENSOR_TYPES`);
- :class:`Climate`: the pavement temperature of a site, a yearly and a daily cycle plus
  a little weather;
- :class:`GainDrift`: every channel's gain as installed, its slow drift and a random walk
  on top, the same for the same seed and day and continuous in the day;
- :class:`SensorState`: what the renderer needs to draw one vehicle's pass.

All relative numbers are fractions (``-0.0025`` is -0.25 %).
"""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CHINA_TIME = timezone(timedelta(hours=8))
"""Aware datetimes are read in China time: the site's clock, the sun's within an hour."""

FACTOR_FLOOR = 0.2
"""The response never falls below this: a polynomial fitted over -20..60 °C must not turn
negative when someone asks it about 150 °C."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SensorResponse(_Model):
    """Relative sensitivity of a strip: 1 at the reference temperature and speed.

    ``factor(T, v) = (1 + a (T - T0) + b (T - T0)^2) * (1 + c (v - v0))``.
    """

    name: str = Field(min_length=1, max_length=64)
    temp_linear_per_c: float = Field(ge=-0.02, le=0.02, description="a, 1/°C")
    temp_quadratic_per_c2: float = Field(0.0, ge=-1e-3, le=1e-3, description="b, 1/°C²")
    reference_temp_c: float = Field(20.0, ge=-40, le=80)
    speed_per_kmh: float = Field(0.0, ge=-0.01, le=0.01, description="c, 1/(km/h)")
    reference_speed_kmh: float = Field(60.0, gt=0, le=200)
    source: str = Field(min_length=1, max_length=600)

    def temperature_factor(self, temperature_c: float) -> float:
        """Relative sensitivity at ``temperature_c`` (at the reference speed)."""
        d = temperature_c - self.reference_temp_c
        return max(1.0 + self.temp_linear_per_c * d + self.temp_quadratic_per_c2 * d * d,
                   FACTOR_FLOOR)

    def speed_factor(self, speed_kmh: float) -> float:
        """Relative sensitivity at ``speed_kmh`` (at the reference temperature)."""
        return max(1.0 + self.speed_per_kmh * (speed_kmh - self.reference_speed_kmh),
                   FACTOR_FLOOR)

    def factor(self, temperature_c: float, speed_kmh: float) -> float:
        """Relative sensitivity of a pass at ``speed_kmh`` over pavement at
        ``temperature_c``: what the strip's output is multiplied by."""
        return self.temperature_factor(temperature_c) * self.speed_factor(speed_kmh)


SENSOR_TYPES: dict[str, SensorResponse] = {
    "ideal": SensorResponse(
        name="ideal", temp_linear_per_c=0.0,
        source="no effect: the simulator's reference, a strip that never changes"),
    "quartz": SensorResponse(
        name="quartz", temp_linear_per_c=-0.0002,
        source=("temperature: -0.02 %/°C, the temperature coefficient of sensitivity that "
                "quartz WIM strip data sheets state (Kistler Lineas 9195 series; the same "
                "figure in the Amond quartz WIM sensor data sheet); quadratic term and speed "
                "effect: assumption: none, quartz elements under preload in a metal "
                "profile (Burnos & Rys, Sensors 2016, 16(12) 2143: quartz the least "
                "temperature-dependent of polymer, quartz and bending plate)")),
    "piezo_polymer": SensorResponse(
        name="piezo_polymer", temp_linear_per_c=-0.0025, temp_quadratic_per_c2=4e-5,
        speed_per_kmh=-0.0008,
        source=("assumption: -0.25 %/°C linear, +0.004 %/°C² quadratic around 20 °C, "
                "-0.08 % per km/h around 60 km/h, chosen to match in kind what is reported "
                "for polymer piezo (Roadtrax BL-like) strips: a strong, curved dependence "
                "on pavement temperature (Kwon, MnDOT report 2016-10, BL against Lineas "
                "on one highway; Burnos & Rys, Sensors 2016, 16(12) 2143) and a "
                "sensitivity that changes with loading rate; the figures themselves are not "
                "taken from a data sheet")),
}
"""Sensor types the simulator knows, each with where its numbers come from."""


class Climate(_Model):
    """Pavement surface temperature of a site: a yearly and a daily cosine plus weather.

    The defaults are an assumption for central and eastern China (asphalt surface, sun):
    mean 18 °C, yearly swing ±13 °C peaking about 20 July, daily swing ±8 °C peaking at
    14:00, weather ±0.8 °C. They are not measurements of any site.
    """

    mean_c: float = Field(18.0, ge=-30, le=50)
    yearly_amplitude_c: float = Field(13.0, ge=0, le=40)
    warmest_day_of_year: float = Field(201.0, ge=0, lt=366, description="1 Jan is day 0")
    daily_amplitude_c: float = Field(8.0, ge=0, le=30)
    warmest_hour: float = Field(14.0, ge=0, lt=24, description="local time, hours")
    noise_c: float = Field(0.8, ge=0, le=10, description="bound of the weather term")
    seed: int = 0
    source: str = Field(
        "assumption: central/eastern China asphalt pavement, mean 18 °C, yearly ±13 °C "
        "warmest about 20 July, daily ±8 °C warmest at 14:00; no site measured",
        max_length=600)

    def pavement_c(self, when: datetime) -> float:
        """Pavement temperature at ``when`` (naive: the site's local time; aware: read in
        China time)."""
        if when.tzinfo is not None:
            when = when.astimezone(CHINA_TIME).replace(tzinfo=None)
        day = (when - datetime(when.year, 1, 1)).total_seconds() / 86_400.0
        hour = when.hour + when.minute / 60 + (when.second + when.microsecond * 1e-6) / 3600
        yearly = math.cos(2 * math.pi * (day - self.warmest_day_of_year) / 365.25)
        daily = math.cos(2 * math.pi * (hour - self.warmest_hour) / 24.0)
        return (self.mean_c + self.yearly_amplitude_c * yearly
                + self.daily_amplitude_c * daily + self._weather(when))

    def _weather(self, when: datetime) -> float:
        """A slow, smooth, seeded wobble within ``±noise_c``: fronts and clouds over days,
        the same for the same seed and moment."""
        if self.noise_c == 0.0:
            return 0.0
        rng = np.random.default_rng([self.seed, 31])
        periods_d = rng.uniform([0.5, 1.7, 4.0], [1.3, 3.5, 9.0])
        phases = rng.uniform(0, 2 * np.pi, 3)
        t_d = (when - datetime(2000, 1, 1)).total_seconds() / 86_400.0
        waves = np.sin(2 * np.pi * t_d / periods_d + phases)
        return float(self.noise_c * waves.mean())


WALK_CHUNK_DAYS = 64
"""Days of random-walk steps drawn from one seed: any day's gains cost a few draws."""


class GainDrift(_Model):
    """How each channel's gain stands at installation and moves afterwards.

    ``gain(day) = lane * g0 * (1 + rate * day + walk(day))``: ``lane`` ~ 1 ± ``lane_sd``,
    shared by the channels of one lane; ``g0`` ~ 1 ± ``install_sd``, ``rate`` ~
    ``rate_mean_per_day`` ± ``rate_sd_per_day`` per channel, ``walk`` a random walk of
    ``walk_sd_per_day`` a day, linear between whole days.
    """

    lane_sd: float = Field(0.05, ge=0, le=0.3)
    lane_source: str = Field(
        "assumption: a strip type's nominal sensitivity is the maker's, in the maker's rig; "
        "bedded in its slot, a strip passes on a share of the wheel's force that depends on "
        "the grout, its depth below the surface and the stiffness of the pavement around "
        "it, shared by the strips of a lane laid in one pour: 5 % (1σ) per lane. It is why "
        "a site is calibrated with trucks of known weight before its figures are used; no "
        "measurement of a site's factor against its strips' data sheet was at hand",
        max_length=600)

    install_sd: float = Field(0.02, ge=0, le=0.2)
    rate_mean_per_day: float = Field(-0.0004, ge=-0.01, le=0.01)
    rate_sd_per_day: float = Field(0.00015, ge=0, le=0.01)
    walk_sd_per_day: float = Field(0.0003, ge=0, le=0.01)
    source: str = Field(
        "assumption: installation spread 2 % (strips and their bedding differ), a loss of "
        "0.04 %/day ± 0.015 %/day per channel (about 3.5 % in 90 days: sensors ageing "
        "and the pavement around them settling) and a 0.03 %/day random walk; chosen so "
        "that 90 days without recalibration leave a unit out of its class; no long-term "
        "measurements of a strip were at hand", max_length=600)

    def channel_gains(self, n_channels: int, day: float, seed: int, *,
                      channels_per_lane: int = 4) -> np.ndarray:
        """Gain of every channel ``day`` days after installation, shape ``(n_channels,)``;
        channels ``0 … channels_per_lane - 1`` are lane 1's (the site's
        :attr:`~drivers.strips.StripArray.channels_per_lane`; 4 for two rows).

        Each channel and lane draws from its own seeds, so channel 3's gain does not change
        when the site has more channels, and day 10.5 lies between days 10 and 11.
        """
        if day < 0:
            raise ValueError(f"day {day} is before the installation (day 0)")
        if channels_per_lane < 1:
            raise ValueError(f"channels_per_lane {channels_per_lane} must be at least 1")
        return np.array([self._lane(ch // channels_per_lane, seed) * self._gain(ch, day, seed)
                         for ch in range(n_channels)])

    def _lane(self, lane: int, seed: int) -> float:
        """The lane's bedding factor: the same every day, within ±3σ."""
        return 1.0 + self.lane_sd * float(np.clip(
            np.random.default_rng([seed, 4, lane]).normal(), -3, 3))

    def _gain(self, channel: int, day: float, seed: int) -> float:
        g0 = 1.0 + self.install_sd * float(np.clip(
            np.random.default_rng([seed, 1, channel]).normal(), -4, 4))
        rate = self.rate_mean_per_day + self.rate_sd_per_day * float(
            np.random.default_rng([seed, 2, channel]).normal())
        return g0 * (1.0 + rate * day + self._walk(channel, day, seed))

    def _walk(self, channel: int, day: float, seed: int) -> float:
        """The random walk at ``day``: cumulative daily steps, linear in between."""
        if self.walk_sd_per_day == 0.0:
            return 0.0
        whole = math.floor(day)
        chunks = [np.random.default_rng([seed, 3, channel, c]).normal(
                      0.0, self.walk_sd_per_day, WALK_CHUNK_DAYS)
                  for c in range(whole // WALK_CHUNK_DAYS + 1)]
        walk = np.concatenate([[0.0], np.cumsum(np.concatenate(chunks))])
        return float(walk[whole] + (day - whole) * (walk[whole + 1] - walk[whole]))


@dataclass(frozen=True)
class SensorState:
    """The sensor as one vehicle found it: pavement temperature and every channel's gain."""

    temperature_c: float
    channel_gain: np.ndarray = field(repr=False)
