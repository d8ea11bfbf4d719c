"""The signal loop: sample blocks in, weighed and classified vehicles out.

Ties the stream stages together — :class:`~edge.signal.pulses.PulseDetector` over all
channels, :class:`~edge.signal.vehicles.VehicleAssembler` over all lanes — and guards them:
a block that is not what the digitiser should deliver (wrong shape, NaN, out of range) is
dropped with a warning that says what was wrong, counted, and the loop goes on; samples
lost that way end the vehicles in progress with the flag ``data_gap``.
"""

import bisect
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from calibration.chain import Chain
from drivers.strips import StripArray
from edge.signal.lanes import rehome_boundary_pulses
from edge.signal.pulses import PulseDetector
from edge.signal.settings import SignalSettings
from edge.signal.vehicles import AxleCoder, Vehicle, VehicleAssembler
from zhichao.errors import ConfigError, ZhichaoError

log = logging.getLogger("zhichao.edge.signal")


class SignalError(ZhichaoError):
    """A block of samples the loop cannot use; ``reason`` names the kind of fault."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class LoopStats:
    """What the loop has seen, for health reports and the evidence trail."""

    blocks: int = 0
    blocks_dropped: int = 0
    drop_reasons: Counter = field(default_factory=Counter)
    gaps: int = 0
    vehicles: int = 0


def check_block(block: object, n_channels: int) -> np.ndarray:
    """The block as int16 ``(n_channels, n)``, or :class:`SignalError` saying what is wrong.

    Examples
    --------
    >>> check_block(np.zeros((2, 3)), 4)
    Traceback (most recent call last):
    ...
    edge.signal.loop.SignalError: sample block has 2 channels, expected 4 (shape (2, 3))
    """
    if not isinstance(block, np.ndarray):
        raise SignalError(f"sample block is a {type(block).__name__}, expected a numpy array",
                          "not an array")
    if block.ndim != 2:
        raise SignalError(f"sample block has {block.ndim} dimension(s), expected 2 "
                          f"(channels, samples); shape {block.shape}", "wrong shape")
    if block.shape[0] != n_channels:
        raise SignalError(f"sample block has {block.shape[0]} channels, expected "
                          f"{n_channels} (shape {block.shape})", "wrong channel count")
    if block.dtype == np.int16:
        return block
    if not np.issubdtype(block.dtype, np.number) or np.iscomplexobj(block):
        raise SignalError(f"sample block has dtype {block.dtype}, expected int16 counts",
                          "wrong dtype")
    bad = ~np.isfinite(block) if np.issubdtype(block.dtype, np.floating) else None
    if bad is not None and bad.any():
        ch, i = np.argwhere(bad)[0]
        raise SignalError(f"sample block holds {int(bad.sum())} NaN/inf value(s), first at "
                          f"channel {ch}, sample {i}", "NaN or inf")
    lo, hi = np.iinfo(np.int16).min, np.iinfo(np.int16).max
    if block.size and (block.min() < lo or block.max() > hi):
        raise SignalError(f"sample block has values outside the int16 range "
                          f"({block.min()}..{block.max()})", "out of range")
    return np.rint(block).astype(np.int16)


class SignalLoop:
    """Weighs every vehicle crossing a strip-sensor site.

    Parameters
    ----------
    site
        The sensor array: geometry and scale.
    coder
        Spacings and tyres to axle-type code (from the rule tables).
    group_threshold_m
        Axles closer than this form one group (from the rule tables).
    settings
        Signal-stage parameters.
    calibration
        The unit's calibration chain (:mod:`calibration.chain`), or the older plain form:
        a factor per channel on the newtons per count, shape ``(n_channels,)``. None: the
        strips as specified. Channel gains scale each pulse; the speed, temperature and
        lane stages scale each finished vehicle at its own speed and pavement temperature.
    """

    TEMPERATURE_MEMORY_S = 600.0
    """Temperatures given with blocks are remembered this long, to weigh each vehicle at
    the temperature of its own pass whenever its batch is processed."""

    def __init__(self, site: StripArray, coder: AxleCoder, group_threshold_m: float,
                 settings: SignalSettings | None = None,
                 calibration: Chain | Sequence[float] | None = None) -> None:
        self.site = site
        self.settings = settings or SignalSettings()
        self.chain = _as_chain(calibration, site)
        self.calibration = self.chain.channel_factors(site.n_channels)
        self.detector = PulseDetector(site.n_channels, site.fs_hz, self.settings)
        self.assembler = VehicleAssembler(site, self.settings, coder, group_threshold_m)
        self.stats = LoopStats()
        self.temperature_c = site.reference_temp_c
        self._lane_of = site.channel_table()[:, 0]
        self._next_index = 0
        self._gap = False
        self._batch: list[np.ndarray] = []
        self._batch_n = 0
        self._gap_ends_s: list[float] = []
        self._temps_t: list[float] = []   # stream time (s) from which ...
        self._temps_c: list[float] = []   # ... this pavement temperature holds

    def newtons_per_count(self) -> np.ndarray:
        """Scale of each channel at the reference temperature, N per count; the change
        with temperature is applied per vehicle, at the temperature of its pass."""
        return self.calibration / self.site.sensitivity(self.site.reference_temp_c)

    def process(self, block: object, start_index: int | None = None,
                temperature_c: float | None = None) -> list[Vehicle]:
        """Feed one block; return the vehicles finished by it.

        ``start_index`` (samples since the stream began), when the digitiser gives it,
        lets the loop notice lost blocks; otherwise blocks are taken as contiguous.
        """
        self.stats.blocks += 1
        try:
            data = check_block(block, self.site.n_channels)
        except SignalError as exc:
            return self._drop(block, start_index, exc)
        if temperature_c is not None:
            self._remember_temperature(float(temperature_c), start_index)
        finished: list[Vehicle] = []
        if start_index is not None and self.stats.blocks - self.stats.blocks_dropped == 1:
            self._next_index = start_index  # the first block: the stream began before us
            self.detector.reset(start_index)
        if start_index is not None and start_index != self._next_index:
            self._gap = True
            self._next_index = start_index
        if self._gap:
            finished += self._end_at_gap()
        self._next_index += data.shape[1]
        self._batch.append(data)
        self._batch_n += data.shape[1]
        if self._batch_n >= self.settings.batch_s * self.site.fs_hz:
            finished += self._run_batch()
        self.stats.vehicles += len(finished)
        return [self._weighed(v) for v in finished]

    def flush(self) -> list[Vehicle]:
        """End of the stream: finish every vehicle still held."""
        vehicles = self._run_batch() + self._after_gaps(self.assembler.flush())
        self.stats.vehicles += len(vehicles)
        return sorted((self._weighed(v) for v in vehicles), key=lambda v: v.t_s)

    def _remember_temperature(self, temperature_c: float, start_index: int | None) -> None:
        """Note the pavement temperature from the start of this block on."""
        self.temperature_c = temperature_c
        t = (self._next_index if start_index is None else start_index) / self.site.fs_hz
        if self._temps_c and self._temps_c[-1] == temperature_c:
            return
        self._temps_t.append(t)
        self._temps_c.append(temperature_c)
        keep = bisect.bisect_left(self._temps_t, t - self.TEMPERATURE_MEMORY_S)
        if keep > 1:
            del self._temps_t[:keep - 1], self._temps_c[:keep - 1]

    def temperature_at(self, t_s: float) -> float:
        """The pavement temperature given for stream time ``t_s`` (the reference
        temperature before any was given)."""
        i = bisect.bisect_right(self._temps_t, t_s) - 1
        return self._temps_c[max(i, 0)] if self._temps_c else self.site.reference_temp_c

    def _weighed(self, v: Vehicle) -> Vehicle:
        """The vehicle with the chain's per-vehicle stages applied (speed, temperature,
        lane), and the temperature it was weighed at."""
        temperature = self.temperature_at(v.t_s)
        factor = (self.chain.vehicle_factor(v.lane, v.speed_mps, temperature)
                  * self.site.sensitivity(self.site.reference_temp_c)
                  / self.site.sensitivity(temperature))
        if factor == 1.0:
            return replace(v, temperature_c=temperature)
        return replace(v, axle_loads_kg=v.axle_loads_kg * factor,
                       row_loads_kg=v.row_loads_kg * factor, temperature_c=temperature,
                       calibration_factor=factor)

    def _run_batch(self) -> list[Vehicle]:
        """Detect pulses in the gathered blocks and assemble what they finish."""
        if not self._batch:
            return []
        blocks, self._batch, self._batch_n = self._batch, [], 0
        pulses = self.detector.push(*blocks)
        return self._after_gaps(self._assemble(pulses, self._quiet_through_s()))

    def _quiet_through_s(self) -> np.ndarray:
        """Per lane ``(lanes,)``: no pulse still to come that can be this lane's has its
        centre before this stream time (s).

        A wheel moved in from a neighbour lane (:mod:`edge.signal.lanes`) comes with a
        pulse of this lane's own within ``pair_window_s``, in the same batch.
        """
        through = np.full(self.site.lanes, np.inf)
        np.minimum.at(through, self._lane_of, self.detector.quiet_through_s)
        return through - self.settings.pair_window_s

    def trail(self) -> dict:
        """The parameters of every stage, for the evidence's processing trail."""
        return {"site": self.site.model_dump(), "signal": self.settings.model_dump(),
                "calibration": self.calibration.tolist(),
                "calibration_version": self.chain.version,
                "calibration_digest": self.chain.digest()}

    def _assemble(self, pulses: np.ndarray, through_s: float) -> list[Vehicle]:
        """Scale areas to N·s, hand each lane its pulses, collect finished vehicles."""
        pulses = pulses.copy()
        pulses["area"] *= self.newtons_per_count()[pulses["channel"]]
        pulses = rehome_boundary_pulses(pulses, self.site, self.settings.pair_window_s)
        return self.assembler.push(pulses, self._lane_of[pulses["channel"]], through_s)

    def _drop(self, block: object, start_index: int | None, exc: SignalError) -> list[Vehicle]:
        """Count and report a bad block; advance the clock past it when its length is known."""
        self.stats.blocks_dropped += 1
        self.stats.drop_reasons[exc.reason] += 1
        where = f"block {self.stats.blocks}" + (f" at sample {start_index}"
                                                 if start_index is not None else "")
        log.warning("dropped %s: %s", where, exc)
        shape = getattr(block, "shape", ())
        if len(shape) == 2:
            at = self._next_index if start_index is None else start_index
            self._next_index = at + int(shape[1])
        self._gap = True
        return []

    def _end_at_gap(self) -> list[Vehicle]:
        """Samples were lost: finish held vehicles flagged ``data_gap``, restart detection."""
        self._gap = False
        self.stats.gaps += 1
        before = self._run_batch()          # the samples gathered before the gap are good
        ended = [_with_flag(v, "data_gap") for v in self.assembler.flush()]
        self.detector.reset(self._next_index)
        self._gap_ends_s.append(self._next_index / self.site.fs_hz)
        return before + ended

    def _after_gaps(self, vehicles: list[Vehicle]) -> list[Vehicle]:
        """Flag ``data_gap`` on vehicles that may be the rest of one cut by a gap.

        What follows a gap within one vehicle length (``max_wheelbase_m`` at the
        vehicle's speed) may have lost its front axles in it; a vehicle that simply
        arrived then is flagged too: doubt goes to review, not to a fine.
        """
        if not self._gap_ends_s:
            return vehicles
        reach = self.settings.max_wheelbase_m
        span = self.site.row_positions_m()[-1]  # a first axle seen only by later rows
        out = [_with_flag(v, "data_gap")
               if any(-span / v.speed_mps <= v.t_s - g <= reach / v.speed_mps
                      for g in self._gap_ends_s)
               else v for v in vehicles]
        horizon = self.detector.complete_through_s - reach / self.settings.min_speed_mps
        self._gap_ends_s = [g for g in self._gap_ends_s if g > horizon]
        return out


def _as_chain(calibration: Chain | Sequence[float] | None, site: StripArray) -> Chain:
    """The loop's calibration as a chain, checked against the site's channels and lanes."""
    if calibration is None:
        return Chain.identity("unit")
    if not isinstance(calibration, Chain):
        factors = np.asarray(calibration, float)
        if factors.shape != (site.n_channels,):
            raise ConfigError(f"calibration has {factors.size} factors, expected "
                              f"one per channel ({site.n_channels})")
        calibration = Chain(device_id="unit", version="settings",
                            stages=[{"kind": "channel_gain", "version": "settings",
                                     "fitted_from": "settings file",
                                     "factors": factors.tolist()}])
    calibration.check_site(site.n_channels, site.lanes)
    return calibration


def _with_flag(v: Vehicle, flag: str) -> Vehicle:
    """The same vehicle with one more quality flag."""
    return replace(v, flags=v.flags | {flag})
