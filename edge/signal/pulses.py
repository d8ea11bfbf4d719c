"""Pulses in strip-sensor samples: baseline, hysteresis detection, areas, edge times.

One pulse is one tyre (or side of an axle) crossing one half-strip. The stage is a stream
stage in ObsPy's manner: numpy over whole blocks, its state carried explicitly from block
to block, so that feeding a recording in any split gives the same pulses as feeding it at
once (frames are aligned to the stream's first sample; a pulse still open at the end of a
block is carried, raw, into the next).

Per sample, only three whole-array operations run: each frame's maximum (a frame is
quiet when its maximum stays under the threshold, and only quiet frames move the
baseline, so the recursion from frame to frame runs on one value per channel), one
comparison against the per-frame threshold and one ``flatnonzero``; the baseline level
reads a contiguous ``1/decimation`` of each frame. All further work touches only the
samples inside pulses.
"""

from dataclasses import dataclass, field

import numpy as np

from edge.signal.settings import SignalSettings

PULSE_DTYPE = np.dtype([
    ("channel", np.int16),
    ("t_c", np.float64),    # centroid time (s from stream start): the wheel over the strip
    ("t_on", np.float64),   # rising half-peak crossing (s), sub-sample
    ("t_off", np.float64),  # falling half-peak crossing (s), sub-sample
    ("area", np.float64),   # sum of (counts - baseline) / fs: counts * s
    ("peak", np.float32),   # counts above baseline
    ("saturated", np.bool_),
])
INT16_MAX = np.iinfo(np.int16).max


@dataclass
class PulseStats:
    """Counts a technician reads to judge the sensors."""

    samples: int = 0
    pulses: int = 0
    below_hi: int = 0
    too_long: int = 0
    baseline_holds: int = 0


@dataclass
class PulseDetector:
    """Stream stage: int16 blocks ``(n_channels, n)`` in, arrays of :data:`PULSE_DTYPE` out.

    Examples
    --------
    >>> import numpy as np
    >>> det = PulseDetector(n_channels=1, fs_hz=1000.0)
    >>> x = np.full((1, 20_000), 100, np.int16)
    >>> x[0, 9_000:9_010] += 1_000
    >>> p = det.push(x)
    >>> int(p["channel"][0]), round(float(p["area"][0]), 3)
    (0, 10.0)
    """

    n_channels: int
    fs_hz: float
    settings: SignalSettings = field(default_factory=SignalSettings)
    stats: PulseStats = field(default_factory=PulseStats)
    _carry: np.ndarray | None = None
    _carry_start: int = 0
    _baseline: np.ndarray | None = None
    _suppress: np.ndarray | None = None
    _quiet: np.ndarray | None = None

    @property
    def complete_through_s(self) -> float:
        """Every pulse starting before this stream time has been returned."""
        return self._carry_start / self.fs_hz

    @property
    def quiet_through_s(self) -> np.ndarray:
        """Per channel, ``(n_channels,)``: no pulse still to be returned starts before this
        stream time (s).

        At least :attr:`complete_through_s`; later where the carried samples of a channel
        stay under the threshold they will be examined with (each carried frame's
        baseline is already known: it moves only at frame ends, and only with the frames
        before it), up to the end of the samples pushed.
        """
        if self._quiet is None:
            return np.full(self.n_channels, self.complete_through_s)
        return self._quiet / self.fs_hz

    def reset(self, next_start: int) -> None:
        """Forget the carried samples (after a gap in the data); keep the baseline."""
        self._carry = None
        self._carry_start = next_start
        self._quiet = None

    def push(self, *blocks: np.ndarray) -> np.ndarray:
        """Add samples (one block or several in a row); return the pulses now complete."""
        parts = ([] if self._carry is None else [self._carry]) + list(blocks)
        buf = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        w = self.settings.frame_samples
        n_frames = buf.shape[1] // w
        if n_frames == 0:
            self._carry = buf
            if self._baseline is not None:
                self._quiet = self._carry_start + _first_above(buf, self._baseline[:, None], w,
                                                               self.settings.lo_counts)
            return np.empty(0, PULSE_DTYPE)
        frames = buf[:, : n_frames * w].reshape(self.n_channels, n_frames, w)  # a view
        level, after, mask = self._detect(frames)
        pulses, cut_frame = self._pulses(frames, level, mask)
        # frames from the cut on are carried and examined again with the next block
        self.stats.baseline_holds += int((level[:, :cut_frame] == after[:, :cut_frame]).sum())
        self._baseline = after[:, cut_frame - 1] if cut_frame > 0 else self._baseline
        self._carry = buf[:, cut_frame * w:] if cut_frame * w < buf.shape[1] else None
        self.stats.samples += cut_frame * w
        self._carry_start += cut_frame * w
        # the carried frames' baselines, and the one of the partial frame after them
        carried_level = np.concatenate([level[:, cut_frame:], after[:, -1:]], axis=1)
        self._quiet = self._carry_start + (
            np.zeros(self.n_channels, np.int64) if self._carry is None
            else _first_above(self._carry, carried_level, w, self.settings.lo_counts))
        self.stats.pulses += len(pulses)
        return pulses

    def _detect(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The baseline before and after each frame, and the samples above threshold.

        Returns ``level`` and ``after`` ``(C, F)`` and the mask ``(C, F, W)``. A frame
        with no sample above the threshold is quiet: its mean (over a contiguous slice of
        ``frame_samples / decimation`` samples) pulls the baseline with time constant
        ``baseline_tau_s``; a busy frame holds it, as does a quiet frame further than
        ``max_baseline_step_counts`` from it (a load standing on the strip, not drift).
        """
        s = self.settings
        n_ch, n_frames, w = frames.shape
        head = frames[:, :, : w // s.decimation].mean(axis=2)
        if self._baseline is None:  # the first data: most of any recording is idle
            self._baseline = np.median(frames[:, 0, :], axis=1).astype(np.float64)
            self._suppress = np.zeros(n_ch, bool)
        alpha = 1.0 - np.exp(-w / (s.baseline_tau_s * self.fs_hz))
        peak = frames.max(axis=2)
        level = np.empty((n_ch, n_frames))
        after = np.empty((n_ch, n_frames))
        threshold = np.empty((n_ch, n_frames), np.int16)
        b = self._baseline.copy()
        for k in range(n_frames):  # per frame, over channels: arrays of n_ch values only
            level[:, k] = b
            threshold[:, k] = np.minimum(np.floor(b + s.lo_counts), INT16_MAX)
            step = head[:, k] - b
            quiet = (peak[:, k] <= threshold[:, k]) & (np.abs(step) < s.max_baseline_step_counts)
            b = b + alpha * step * quiet
            after[:, k] = b
        return level, after, frames > threshold[:, :, None]

    def _pulses(self, frames: np.ndarray, level: np.ndarray, mask: np.ndarray
                ) -> tuple[np.ndarray, int]:
        """Pulses starting before the cut, and the cut (in frames) for the next block."""
        s = self.settings
        n_ch, n_frames, w = frames.shape
        n = n_frames * w
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return np.empty(0, PULSE_DTYPE), n_frames
        flat = _Flat(frames)
        breaks = np.flatnonzero((np.diff(idx) > s.merge_gap_samples + 1)
                                | (np.diff(idx // n) != 0)) + 1
        first = np.concatenate([[0], breaks])          # index into idx of each run's start
        last = np.concatenate([breaks - 1, [idx.size - 1]])
        start, end = idx[first], idx[last]              # flat positions
        channel = start // n
        cut = self._cut(start % n, end % n, channel, n, w)
        keep = (start % n) < cut * w
        raw = flat[idx]
        y = raw.astype(np.float64) - level.reshape(-1)[idx // w]
        run = np.repeat(np.arange(first.size), last - first + 1)
        area = np.add.reduceat(y, first)
        peak = np.maximum.reduceat(y, first)
        moment = np.add.reduceat(y * (idx - start[run]), first)
        saturated = np.maximum.reduceat(raw, first) >= INT16_MAX
        length_ok = (end - start + 1) <= s.max_pulse_s * self.fs_hz
        fresh = ~(self._suppress[channel] & (start % n == 0))
        good = keep & (peak >= s.hi_counts) & length_ok & fresh
        self.stats.below_hi += int((keep & fresh & (peak < s.hi_counts)).sum())
        self.stats.too_long += int((keep & fresh & ~length_ok).sum())
        # A dropped run that reaches past the cut comes back, cut short, with the next
        # block: its tail must be dropped too, not reported as a pulse of its own.
        goes_on = (end % n >= cut * w) | (end % n == n - 1)   # into the carried samples
        doomed = (~length_ok | ~fresh) & goes_on & (start % n < max(cut * w, 1))
        self._suppress = np.zeros(n_ch, bool)
        self._suppress[channel[doomed]] = True
        beside = np.concatenate([np.maximum(start - 1, channel * n),
                                 np.minimum(end + 1, channel * n + n - 1)])
        y_beside = flat[beside].astype(np.float64) - level.reshape(-1)[beside // w]
        t_on, t_off = _half_peak_times(y, idx, run, first=first, last=last, peak=peak,
                                       y_before=y_beside[: first.size],
                                       y_after=y_beside[first.size:])
        t_on -= channel * n
        t_off -= channel * n
        t0 = self._carry_start
        out = np.empty(int(good.sum()), PULSE_DTYPE)
        out["channel"] = channel[good]
        out["t_c"] = (t0 + start[good] % n + moment[good] / area[good]) / self.fs_hz
        out["t_on"] = (t0 + t_on[good]) / self.fs_hz
        out["t_off"] = (t0 + t_off[good]) / self.fs_hz
        out["area"] = area[good] / self.fs_hz
        out["peak"] = peak[good]
        out["saturated"] = saturated[good]
        order = np.argsort(out["t_c"], kind="stable")
        return out[order], cut

    def _cut(self, start: np.ndarray, end: np.ndarray, channel: np.ndarray, n: int,
             w: int) -> int:
        """Frame from which the samples are carried: no pulse may straddle it.

        Pulses still open at the end of the data, unless already too long, are carried
        whole (with one sample before them for the edge interpolation).
        """
        max_len = self.settings.max_pulse_s * self.fs_hz
        open_ = (end == n - 1) & (end - start + 1 <= max_len)
        cut = n // w
        if open_.any():
            cut = min(cut, int(max(start[open_].min() - 1, 0)) // w)
        while True:
            straddling = (start < cut * w) & (end >= cut * w) & (end - start + 1 <= max_len)
            if not straddling.any():
                return cut
            cut = int(max(start[straddling].min() - 1, 0)) // w


def _first_above(carry: np.ndarray, level: np.ndarray, w: int, lo_counts: float
                 ) -> np.ndarray:
    """Per channel, the index of the first sample of ``carry`` ``(C, n)`` above the
    detection threshold, or ``n`` when there is none; ``level`` ``(C, >= ceil(n / w))`` is
    the baseline of each frame of ``w`` samples from the carry's first sample on."""
    n = carry.shape[1]
    threshold = np.minimum(np.floor(level + lo_counts), INT16_MAX)
    above = carry > np.repeat(threshold, w, axis=1)[:, :n]
    return np.where(above.any(axis=1), above.argmax(axis=1), n)


def _half_peak_times(y: np.ndarray, idx: np.ndarray, run: np.ndarray, *, first: np.ndarray,
                     last: np.ndarray, peak: np.ndarray, y_before: np.ndarray,
                     y_after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-sample flat positions where each run first and last crosses half its peak.

    ``y`` are the values above baseline of the samples at flat positions ``idx``, run by
    run; ``y_before`` / ``y_after`` the values of the samples just outside each run.
    """
    half = peak / 2
    above = np.flatnonzero(y >= half[run])
    new = np.empty(above.size, bool)
    new[0] = True
    np.not_equal(run[above[1:]], run[above[:-1]], out=new[1:])
    rise = above[new]
    fall = above[np.append(new[1:], True)]
    inside_on = rise > first
    prev_y = np.where(inside_on, y[np.maximum(rise - 1, 0)], y_before)
    prev_p = np.where(inside_on, idx[np.maximum(rise - 1, 0)], idx[rise] - 1)
    inside_off = fall < last
    next_y = np.where(inside_off, y[np.minimum(fall + 1, y.size - 1)], y_after)
    next_p = np.where(inside_off, idx[np.minimum(fall + 1, y.size - 1)], idx[fall] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_on = np.nan_to_num((half - prev_y) / (y[rise] - prev_y), nan=1.0)
        f_off = np.nan_to_num((y[fall] - half) / (y[fall] - next_y), nan=0.0)
    t_on = prev_p + np.clip(f_on, 0.0, 1.0) * (idx[rise] - prev_p)
    t_off = idx[fall] + np.clip(f_off, 0.0, 1.0) * (next_p - idx[fall])
    return t_on, t_off


class _Flat:
    """Index a ``(C, F, W)`` view by flat position without copying it."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames
        self.n = frames.shape[1] * frames.shape[2]
        self.w = frames.shape[2]

    def __getitem__(self, flat_index: np.ndarray) -> np.ndarray:
        ch, pos = np.divmod(flat_index, self.n)
        return self.frames[ch, pos // self.w, pos % self.w]
