"""Thresholds of trusted time, each with the reason for its value.

None of these is a legal number: they state how far the unit trusts each clock, and are
written into the evidence trail with the clock status they produced.
"""

from pydantic import BaseModel, ConfigDict, Field, model_validator

KERNEL_TOLERANCE_PPM = 500.0
"""The Linux kernel's frequency tolerance (``MAXFREQ``, ``timex.tolerance``): it grows
``maxerror`` by this rate while no time daemon updates it."""


class ClockFitSettings(BaseModel):
    """How a device clock (a digitiser's) is fitted to the host's monotonic clock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_points: int = Field(
        512, ge=8, le=100_000, description="points kept in the sliding window: enough "
        "that each quarter of it holds a frame that came through without scheduling "
        "delay (the lower envelope needs one), few enough that a refit stays below a "
        "millisecond")
    window_s: float = Field(
        60.0, gt=0, description="points older than this (device seconds) leave the "
        "window, so a drift that changes with the cabinet's temperature is followed")
    min_points: int = Field(
        8, ge=4, description="below this many points the rate is not fitted: the host "
        "rate is assumed, with the kernel's 500 ppm tolerance in the bound")
    latency_max_ms: float = Field(
        2.0, gt=0, description="the least receive delay, beyond the frame's known "
        "transmission time, of the quickest frame in each quarter of the window: the "
        "fixed latency a fit cannot see (a 16550 UART holds a frame's last bytes for 4 "
        "character times: 0.35 ms at 115200 baud; a USB adapter up to its latency "
        "timer, 1 ms when set low). Raise it for a 9600-baud line or a USB adapter at "
        "its 16 ms default")
    max_delay_s: float = Field(
        1.0, gt=0, description="a frame received later than this after the fitted line "
        "is left out of the fit (a stalled link tells nothing of the clocks)")


class TimeSettings(BaseModel):
    """When the unit calls its clock synced, how long it trusts it after, and how it
    judges a GPS receiver and a digitiser's clock."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    synced_maxerror_ms: float = Field(
        100.0, gt=0, description="the kernel clock counts as synced only while its own "
        "error bound (timex.maxerror) is below this. The kernel grows maxerror by 500 "
        "ppm (its frequency tolerance) each second no daemon updates it, so a bound of a "
        "few ms passes 100 ms about 200 s after chrony or ntpd stopped: the unit notices "
        "a dead daemon within minutes, long before the kernel sets STA_UNSYNC (at 16 s)")
    holdover_drift_ppm: float = Field(
        20.0, gt=0, le=KERNEL_TOLERANCE_PPM, description="drift assumed for a clock "
        "after its source is lost, while the kernel keeps the frequency it learnt: what "
        "remains is the crystal's change with temperature, a few ppm over a day for a "
        "PC crystal; 20 ppm covers a roadside cabinet from -20 to +60 °C")
    free_drift_ppm: float = Field(
        100.0, gt=0, le=KERNEL_TOLERANCE_PPM, description="drift assumed for a host "
        "clock no daemon has disciplined (holdover after GPS alone): a PC crystal's "
        "tolerance with temperature is within ±100 ppm; the kernel's limit is 500 ppm")
    holdover_max_s: float = Field(
        3600.0, gt=0, description="after this long without a source the clock is "
        "free-running: the drift assumption itself is in doubt once the temperature "
        "may have swung; at 20 ppm the bound has grown by 72 ms by then")
    gps_latency_min_ms: float = Field(
        0.0, ge=0, description="earliest a time sentence arrives after the second it "
        "names (without PPS this window bounds the GPS accuracy)")
    gps_latency_max_ms: float = Field(
        200.0, gt=0, description="latest a time sentence arrives after the second it "
        "names: a receiver computes the fix after the second and then sends; an RMC of "
        "about 70 bytes takes 73 ms at 9600 baud. 200 ms holds when RMC and ZDA come "
        "first in the receiver's cycle; widen it when other sentences come before them")
    gps_fresh_s: float = Field(
        3.0, gt=0, description="a GPS time stays usable this long without a new valid "
        "sentence: receivers send every second, so 3 s rides out two lost sentences and "
        "then hands over to holdover")
    gps_window_s: float = Field(
        30.0, gt=0, description="sentences of this last stretch are combined into the "
        "GPS offset; short enough that an undisciplined host clock (100 ppm) drifts "
        "only 3 ms in it")
    gps_pps: bool = Field(
        False, description="a PPS edge of the receiver is captured and fed to the "
        "timebase (Timebase.feed_pps); the edge marks the second, so the sentence "
        "latency no longer bounds the accuracy. Not tested on a real line here")
    gps_pps_uncertainty_ms: float = Field(
        1.0, gt=0, description="bound on the host's capture of a PPS edge (interrupt "
        "latency and scheduling when the edge is read from a serial modem line)")
    fit: ClockFitSettings = Field(default_factory=ClockFitSettings)

    @model_validator(mode="after")
    def _window_in_order(self) -> "TimeSettings":
        if self.gps_latency_min_ms >= self.gps_latency_max_ms:
            raise ValueError(f"gps_latency_min_ms ({self.gps_latency_min_ms}) must be "
                             f"below gps_latency_max_ms ({self.gps_latency_max_ms})")
        return self
