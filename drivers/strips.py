"""The strip-sensor array of a site, as its digitiser sees it.

A site has ``lanes`` lanes; across each lane, ``rows`` rows of load strips spaced
``row_spacing_m`` apart in the direction of travel. Each row is split at the lane centre
into a left and a right half, each wired to its own digitiser channel, so one lane has
``rows * 2`` channels. Channel numbers run lane by lane, row by row, left before right.

The digitiser delivers int16 ``counts`` per channel at ``fs_hz``; a strip's output is
proportional to the force on it, ``counts = counts_per_newton * force`` at the reference
temperature, changing by ``temp_coeff_per_c`` per degree away from it.
"""

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

HALVES: tuple[str, str] = ("left", "right")


class StripArray(BaseModel):
    """Geometry and electrical scale of one site's strip sensors.

    Examples
    --------
    >>> site = StripArray(lanes=2, rows=2)
    >>> site.n_channels
    8
    >>> site.channel(lane=1, row=0, half="right")
    5
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fs_hz: float = Field(10_000.0, gt=0, description="sample rate per channel")
    lanes: int = Field(4, ge=1, le=16)
    rows: int = Field(2, ge=2, le=8, description="rows of strips per lane (speed needs 2+)")
    row_spacing_m: float = Field(1.0, gt=0, description="distance between successive rows")
    strip_width_m: float = Field(0.05, gt=0, description="strip width along the travel")
    lane_width_m: float = Field(3.75, gt=0)
    counts_per_newton: float = Field(1.0, gt=0, description="sensitivity at reference temp")
    reference_temp_c: float = 20.0
    temp_coeff_per_c: float = Field(
        0.0005, description="relative change of sensitivity per degree Celsius"
    )

    @model_validator(mode="after")
    def _rows_fit_in_lane(self) -> "StripArray":
        if self.strip_width_m >= self.row_spacing_m:
            raise ValueError(
                f"strip_width_m ({self.strip_width_m}) must be below "
                f"row_spacing_m ({self.row_spacing_m}): rows would overlap"
            )
        return self

    @property
    def channels_per_lane(self) -> int:
        """Digitiser channels serving one lane (rows × two halves)."""
        return self.rows * 2

    @property
    def n_channels(self) -> int:
        """Digitiser channels of the whole site."""
        return self.lanes * self.channels_per_lane

    def channel(self, lane: int, row: int, half: Literal["left", "right"]) -> int:
        """The digitiser channel of one half-strip."""
        return (lane * self.rows + row) * 2 + HALVES.index(half)

    def channel_table(self) -> np.ndarray:
        """``(n_channels, 3)`` int array of (lane, row, half index) per channel."""
        idx = np.arange(self.n_channels)
        return np.stack([idx // self.channels_per_lane, (idx // 2) % self.rows, idx % 2], 1)

    def row_positions_m(self) -> np.ndarray:
        """Position of each row along the travel, the first row at 0, shape ``(rows,)``."""
        return np.arange(self.rows) * self.row_spacing_m

    def sensitivity(self, temperature_c: float) -> float:
        """Counts per newton at ``temperature_c``."""
        drift = 1.0 + self.temp_coeff_per_c * (temperature_c - self.reference_temp_c)
        return self.counts_per_newton * drift
