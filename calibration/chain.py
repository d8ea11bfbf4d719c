"""A unit's calibration as data: a chain of stages, each fitted, versioned and approved.

A strip's output depends on its own gain, on the vehicle's speed and on the pavement's
temperature, and all three move over the years. So a unit does not weigh with "factors
from the settings" but with a :class:`Chain`, applied in order:

- ``channel_gain``: one factor per digitiser channel (applied to each pulse's area);
- ``speed_factor``: a factor by speed, given at speeds (km/h) and interpolated between
  them (applied to the vehicle, once its speed is known);
- ``temperature_curve``: a factor by pavement temperature, given at points and
  interpolated (applied to the vehicle, at the temperature of its pass);
- ``lane_gain``: one factor per lane, the correction drift tracking proposes.

Every stage says what it was fitted from, its standard uncertainty, and who approved it.
The chain as a whole names the verification certificate that covers it: a unit adjusted
after its verification must be verified again (计量法 第九条), so the center refuses a
capture whose chain's certificate had expired (:mod:`center.legality`). The chain, its
version and digest go into every evidence packet.

Outside the points given, the speed and temperature factors are held at their end values:
a curve is never extrapolated beyond what it was fitted on.
"""

import hashlib
import itertools
import json
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from zhichao.errors import ConfigError

FACTOR_MIN, FACTOR_MAX = 0.5, 2.0
"""A calibration factor outside this range is a fault of the fit or of the file, not a
sensor: strips are replaced long before they are off by a factor of two."""

Factor = Annotated[float, Field(ge=FACTOR_MIN, le=FACTOR_MAX)]
Text = Annotated[str, Field(max_length=200)]

MAX_STAGES = 16
MAX_CHANNELS = 256
MAX_POINTS = 32
MAX_CHAIN_BYTES = 64_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Certificate(_Model):
    """The verification (检定) that covers a chain: JJG 907 after the last adjustment."""

    number: str = Field(min_length=1, max_length=128)
    valid_from: date
    valid_to: date
    issuer: Text = ""

    @model_validator(mode="after")
    def _ordered(self) -> "Certificate":
        if self.valid_to < self.valid_from:
            raise ValueError(f"valid_to {self.valid_to} is before valid_from {self.valid_from}")
        return self

    def covers(self, day: date) -> bool:
        """The certificate is valid on ``day`` (both ends included)."""
        return self.valid_from <= day <= self.valid_to


class _Stage(_Model):
    """What every stage carries besides its numbers."""

    version: str = Field(min_length=1, max_length=64)
    unit: str = Field("factor", max_length=32, description="what the numbers are")
    fitted_from: Text = Field(description="the runs, traffic or datasheet it came from")
    uncertainty_pct: float = Field(0.0, ge=0, le=100,
                                   description="standard uncertainty of the factor, %")
    approved_by: str | None = Field(None, max_length=64)
    approved_at: datetime | None = None


class ChannelGain(_Stage):
    """A factor per digitiser channel, on the newtons per count."""

    kind: Literal["channel_gain"] = "channel_gain"
    factors: list[Factor] = Field(min_length=1, max_length=MAX_CHANNELS)


class LaneGain(_Stage):
    """A factor per lane (0-based index), on the vehicle's loads."""

    kind: Literal["lane_gain"] = "lane_gain"
    factors: list[Factor] = Field(min_length=1, max_length=MAX_CHANNELS)


class _Curve(_Stage):
    """Factors at points, linearly interpolated, held at the ends."""

    factors: list[Factor] = Field(min_length=1, max_length=MAX_POINTS)

    def _points(self) -> list[float]:
        raise NotImplementedError

    @model_validator(mode="after")
    def _curve(self) -> "_Curve":
        points = self._points()
        if len(points) != len(self.factors):
            raise ValueError(f"{len(points)} points but {len(self.factors)} factors")
        if any(b <= a for a, b in itertools.pairwise(points)):
            raise ValueError("points must increase")
        return self

    def at(self, x: float) -> float:
        """The factor at ``x``, held at the end values outside the points."""
        return float(np.interp(x, self._points(), self.factors))


class SpeedFactor(_Curve):
    """A factor by speed (km/h), given at points and interpolated between them (held at
    the ends); a speed-band table and a fitted line are both kept this way."""

    kind: Literal["speed_factor"] = "speed_factor"
    speeds_kmh: list[Annotated[float, Field(ge=0, le=250)]] = Field(min_length=1,
                                                                     max_length=MAX_POINTS)

    def _points(self) -> list[float]:
        return self.speeds_kmh


class TemperatureCurve(_Curve):
    """A factor by pavement temperature (°C)."""

    kind: Literal["temperature_curve"] = "temperature_curve"
    temperatures_c: list[Annotated[float, Field(ge=-60, le=100)]] = Field(
        min_length=1, max_length=MAX_POINTS)

    def _points(self) -> list[float]:
        return self.temperatures_c


Stage = Annotated[ChannelGain | LaneGain | SpeedFactor | TemperatureCurve,
                  Field(discriminator="kind")]


class Chain(_Model):
    """The calibration a unit weighs with: its stages in order, and their verification."""

    device_id: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    stages: list[Stage] = Field([], max_length=MAX_STAGES)
    certificate: Certificate | None = None
    applied_by: str | None = Field(None, max_length=64)
    applied_at: datetime | None = None
    note: Text = ""

    @classmethod
    def identity(cls, device_id: str, version: str = "factory") -> "Chain":
        """No correction at all: what a unit weighs with before it is calibrated."""
        return cls(device_id=device_id, version=version, stages=[])

    @classmethod
    def from_factors(cls, device_id: str, factors: Sequence[float], version: str) -> "Chain":
        """A chain of one channel-gain stage from a plain list (the older settings form)."""
        stage = ChannelGain(version=version, fitted_from="settings file",
                            factors=list(factors))
        return cls(device_id=device_id, version=version, stages=[stage])

    def check_site(self, n_channels: int, lanes: int, where: str = "calibration") -> None:
        """:class:`ConfigError` if a stage does not fit the site's channels or lanes."""
        for i, stage in enumerate(self.stages):
            want = {"channel_gain": n_channels, "lane_gain": lanes}.get(stage.kind)
            if want is not None and len(stage.factors) != want:
                raise ConfigError(f"{where}: stage {i} ({stage.kind} {stage.version}) has "
                                  f"{len(stage.factors)} factors, the site has {want} "
                                  f"{'channels' if stage.kind == 'channel_gain' else 'lanes'}")

    def channel_factors(self, n_channels: int) -> np.ndarray:
        """The product of the channel-gain stages, ``(n_channels,)``."""
        out = np.ones(n_channels)
        for stage in self.stages:
            if isinstance(stage, ChannelGain):
                out *= np.asarray(stage.factors, float)
        return out

    def vehicle_factor(self, lane: int, speed_mps: float, temperature_c: float) -> float:
        """The product of the per-vehicle stages for a pass in ``lane`` (0-based)."""
        factor = 1.0
        for stage in self.stages:
            if isinstance(stage, LaneGain):
                factor *= stage.factors[lane] if lane < len(stage.factors) else 1.0
            elif isinstance(stage, SpeedFactor):
                factor *= stage.at(speed_mps * 3.6)
            elif isinstance(stage, TemperatureCurve):
                factor *= stage.at(temperature_c)
        return factor

    def stage(self, kind: str) -> Stage | None:
        """The chain's stage of this kind, if it has one."""
        return next((s for s in self.stages if s.kind == kind), None)

    def with_stage(self, stage: Stage, version: str) -> "Chain":
        """A new chain: this one with ``stage`` in place of its kind's stage (appended
        where it had none). The caller folds the old stage's factors into the new one."""
        kept = [s for s in self.stages if s.kind != stage.kind]
        return self.model_copy(update={"stages": [*kept, stage], "version": version,
                                       "applied_by": None, "applied_at": None})

    def canonical(self) -> bytes:
        """The one encoding the digest is taken over: sorted keys, no spaces."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self) -> str:
        """SHA-256 of the canonical encoding, hex: names this exact chain."""
        return hashlib.sha256(self.canonical()).hexdigest()

    def describe(self) -> list[str]:
        """One line per stage, for people."""
        lines = []
        for i, s in enumerate(self.stages, 1):
            who = f", approved by {s.approved_by}" if s.approved_by else ", not approved"
            lines.append(f"{i}. {s.kind} {s.version}: {len(s.factors)} factor(s) "
                         f"{min(s.factors):.4f}–{max(s.factors):.4f}, ±{s.uncertainty_pct:.2f} % "
                         f"(1σ), from {s.fitted_from}{who}")
        return lines


def load_chain(path: Path) -> Chain:
    """A chain from its JSON file, or :class:`ConfigError` naming the file and the field."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"calibration file {path}: {exc.strerror}") from exc
    if size > MAX_CHAIN_BYTES:
        raise ConfigError(f"calibration file {path}: {size} bytes, at most "
                          f"{MAX_CHAIN_BYTES} allowed")
    try:
        return Chain.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top)"
        raise ConfigError(f"calibration file {path}: {where}: {first['msg']}") from exc


def save_chain(chain: Chain, path: Path) -> None:
    """Write the chain as indented JSON (atomically: a half-written file is never read)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(chain.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
