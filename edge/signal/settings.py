"""Parameters of the signal stages, validated, and written into every evidence trail.

None of these is a legal number: they tune detection and assembly to the installation.
The axle-grouping threshold, a legal matter, comes from the rule tables instead.
"""

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SignalSettings(BaseModel):
    """How the loop finds pulses, axles and vehicles in strip-sensor samples."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_s: float = Field(4.0, gt=0, description="blocks are gathered until this much "
                           "signal is present, then processed together (latency vs cost)")

    # Baseline tracking and pulse detection (edge.signal.pulses)
    frame_samples: int = Field(4096, ge=256, description="samples per baseline frame")
    decimation: int = Field(8, ge=1, description="every n-th sample feeds the baseline")
    baseline_tau_s: float = Field(5.0, gt=0, description="time constant of the baseline")
    max_baseline_step_counts: float = Field(
        800.0, gt=0, description="a quiet frame further than this from the baseline is "
        "taken as a load standing on the strip, not as drift")
    lo_counts: float = Field(60.0, gt=0, description="a pulse lasts while above this")
    hi_counts: float = Field(250.0, gt=0, description="a pulse must reach this")
    merge_gap_samples: int = Field(4, ge=0, description="dips this short stay in a pulse")
    max_pulse_s: float = Field(3.0, gt=0, description="longer pulses are dropped as faults")

    # Axles (edge.signal.axles)
    pair_window_s: float = Field(0.012, gt=0, description="left/right halves of one wheel "
                                 "pair are at most this far apart in time")
    min_axle_spacing_m: float = Field(1.2, gt=0, description="the shortest axle spacing "
                                      "expected; rows must be closer than this")
    min_speed_mps: float = Field(0.5, gt=0)
    max_speed_mps: float = Field(50.0, gt=0)
    single_tyre_max_n_per_m: float = Field(
        245_000.0, gt=0, description="wheel load per contact length at or below which the "
        "tyre is single")
    wide_base_max_n_per_m: float = Field(
        318_000.0, gt=0, description="... at or below which it is wide-base, above dual")
    light_vehicle_axle_max_kg: float = Field(
        2000.0, gt=0, description="a front axle heavier than this is a truck's: its "
        "unreadable light wheels are dual")
    ghost_axle_max_kg: float = Field(150.0, ge=0, description="lighter axles are ghosts")

    # Vehicles (edge.signal.vehicles)
    split_gap_m: float = Field(10.0, gt=0, description="a longer gap between axles starts "
                               "a new vehicle")
    steer_split_m: float = Field(2.0, gt=0, description="a single-tyred axle this far "
                                 "behind a dual-tyred one starts a new vehicle")
    steer_load_ratio: float = Field(3.0, gt=1, description="... or behind an axle this "
                                    "many times lighter")
    lateral_split_share: float = Field(0.35, gt=0, le=1, description="a jump of the "
                                       "left share this large between axles starts a new "
                                       "vehicle")
    max_wheelbase_m: float = Field(18.0, gt=0, description="longer: two vehicles merged")
    max_axles: int = Field(8, ge=2)
    speed_change_max: float = Field(0.04, gt=0, description="relative speed change from "
                                    "first to last axle that flags braking/accelerating")
    straddle_share_min: float = Field(0.2, gt=0, lt=0.5, description="an axle with less "
                                      "of its load on one half is straddling")
    weave_share_max: float = Field(0.1, gt=0, description="change of the left share "
                                   "between rows that flags weaving")
    weave_heading_max_rad: float = Field(0.012, gt=0, description="heading off the lane's "
                                         "axis that flags weaving")
    nominal_track_m: float = Field(1.9, gt=0, description="track width assumed when "
                                   "turning the skew of an axle into a heading")
    close_after_s: float = Field(0.3, gt=0, description="a vehicle is finished after at "
                                 "least this much silence in its lane")

    @model_validator(mode="after")
    def _consistent(self) -> "SignalSettings":
        if self.hi_counts < self.lo_counts:
            raise ValueError(f"hi_counts ({self.hi_counts}) must not be below "
                             f"lo_counts ({self.lo_counts})")
        if self.frame_samples % self.decimation:
            raise ValueError(f"frame_samples ({self.frame_samples}) must be a multiple of "
                             f"decimation ({self.decimation})")
        if self.wide_base_max_n_per_m < self.single_tyre_max_n_per_m:
            raise ValueError("wide_base_max_n_per_m must not be below single_tyre_max_n_per_m")
        return self
