"""Pulses in strip-sensor samples: baseline, hysteresis detection, areas, edge times.

One pulse is one tyre (or side of an axle) crossing one half-strip. The stage is a stream
stage in ObsPy's manner: numpy over whole blocks, its state carried explicitly from block
to block, so that feeding a recording in any split gives the same pulses as feeding it at
once (frames are aligned to the stream's first sample; a pulse still open at the end of a
block is carried, raw, into the next).

Per sample, only three whole-array operations run: one comparison against the per-frame
threshold, one ``flatnonzero``, and the baseline statistics on every ``decimation``-th
sample. All further work touches only the samples inside pulses.
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

    @property
    def complete_through_s(self) -> float:
        """Every pulse starting before this stream time has been returned."""
        return self._carry_start / self.fs_hz

    def reset(self, next_start: int) -> None:
        """Forget the carried samples (after a gap in the data); keep the baseline."""
        self._carry = None
        self._carry_start = next_start

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add samples, return the pulses that are now complete."""
        buf = block if self._carry is None else np.concatenate([self._carry, block], axis=1)
        w = self.settings.frame_samples
        n_frames = buf.shape[1] // w
        if n_frames == 0:
            self._carry = buf
            return np.empty(0, PULSE_DTYPE)
        frames = np.ascontiguousarray(buf[:, : n_frames * w]).reshape(
            self.n_channels, n_frames, w)
        level, after = self._baselines(frames)
        pulses, cut_frame = self._pulses(frames, level)
        self._baseline = after[:, cut_frame - 1] if cut_frame > 0 else self._baseline
        self._carry = buf[:, cut_frame * w:] if cut_frame * w < buf.shape[1] else None
        self.stats.samples += cut_frame * w
        self._carry_start += cut_frame * w
        self.stats.pulses += len(pulses)
        return pulses

    def _baselines(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Baseline in force during each frame, and after each frame, ``(C, F)`` each.

        The baseline follows the mean of quiet frames (their decimated samples span less
        than ``lo_counts``) with an exponential time constant; a busy frame holds it.
        """
        s = self.settings
        dec = frames[:, :, :: s.decimation]
        mean = dec.mean(axis=2)
        quiet = (dec.max(axis=2) - dec.min(axis=2)) < s.lo_counts
        if self._baseline is None:  # the first data: most of any recording is idle
            self._baseline = np.median(dec[:, 0, :], axis=1).astype(np.float64)
            self._suppress = np.zeros(self.n_channels, bool)
        quiet &= np.abs(mean - self._baseline[:, None]) < s.max_baseline_step_counts
        self.stats.baseline_holds += int((~quiet).sum())
        alpha = 1.0 - np.exp(-s.frame_samples / (s.baseline_tau_s * self.fs_hz))
        level = np.empty_like(mean)
        after = np.empty_like(mean)
        b = self._baseline.copy()
        for k in range(mean.shape[1]):  # per frame, vectorised over channels
            level[:, k] = b
            b = np.where(quiet[:, k], b + alpha * (mean[:, k] - b), b)
            after[:, k] = b
        return level, after

    def _pulses(self, frames: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, int]:
        """Pulses starting before the cut, and the cut (in frames) for the next block."""
        s = self.settings
        n_ch, n_frames, w = frames.shape
        n = n_frames * w
        threshold = np.clip(np.floor(level + s.lo_counts), -32768, INT16_MAX).astype(np.int16)
        idx = np.flatnonzero(frames > threshold[:, :, None])
        if idx.size == 0:
            return np.empty(0, PULSE_DTYPE), n_frames
        flat = frames.reshape(-1)
        breaks = np.flatnonzero((np.diff(idx) > s.merge_gap_samples + 1)
                                | (np.diff(idx // n) != 0)) + 1
        first = np.concatenate([[0], breaks])          # index into idx of each run's start
        last = np.concatenate([breaks - 1, [idx.size - 1]])
        start, end = idx[first], idx[last]              # flat positions
        channel = start // n
        cut = self._cut(start % n, end % n, channel, n, w)
        keep = (start % n) < cut * w
        y = flat[idx].astype(np.float64) - level.reshape(-1)[idx // w]
        run = np.repeat(np.arange(first.size), last - first + 1)
        area = np.add.reduceat(y, first)
        peak = np.maximum.reduceat(y, first)
        moment = np.add.reduceat(y * (idx - start[run]), first)
        saturated = np.maximum.reduceat(flat[idx], first) >= INT16_MAX
        length_ok = (end - start + 1) <= s.max_pulse_s * self.fs_hz
        fresh = ~(self._suppress[channel] & (start % n == 0))
        good = keep & (peak >= s.hi_counts) & length_ok & fresh
        self.stats.below_hi += int((keep & (peak < s.hi_counts)).sum())
        self.stats.too_long += int((keep & ~length_ok).sum())
        open_at_end = (end % n) == n - 1
        self._suppress = np.zeros(n_ch, bool)
        self._suppress[channel[open_at_end & ~length_ok]] = True
        t_on, t_off = self._half_peak_times(flat, level, y, idx, run=run, first=first,
                                            last=last, peak=peak, n=n, w=w)
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

    @staticmethod
    def _half_peak_times(flat: np.ndarray, level: np.ndarray, y: np.ndarray, idx: np.ndarray,
                         *, run: np.ndarray, first: np.ndarray, last: np.ndarray,
                         peak: np.ndarray, n: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Sub-sample times (in samples from the buffer start) of the half-peak crossings."""
        half = peak / 2
        above = np.flatnonzero(y >= half[run])
        new = np.concatenate([[True], run[above[1:]] != run[above[:-1]]])
        rise = above[new]
        fall = above[np.concatenate([new[1:], [True]])]

        def outside(pos: np.ndarray, step: int) -> np.ndarray:
            """Value of the sample just outside a pulse (clamped to the buffer)."""
            ch, p = pos // n, pos % n
            q = np.clip(p + step, 0, n - 1)
            q_flat = ch * n + q
            return flat[q_flat].astype(np.float64) - level.reshape(-1)[q_flat // w]

        prev_y = np.where(rise > first, y[np.maximum(rise - 1, 0)], outside(idx[rise], -1))
        prev_p = np.where(rise > first, idx[np.maximum(rise - 1, 0)], idx[rise] - 1)
        next_y = np.where(fall < last, y[np.minimum(fall + 1, y.size - 1)],
                          outside(idx[fall], 1))
        next_p = np.where(fall < last, idx[np.minimum(fall + 1, y.size - 1)], idx[fall] + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            f_on = np.clip((half - prev_y) / (y[rise] - prev_y), 0.0, 1.0)
            f_off = np.clip((y[fall] - half) / (y[fall] - next_y), 0.0, 1.0)
        t_on = prev_p + np.nan_to_num(f_on, nan=1.0) * (idx[rise] - prev_p)
        t_off = idx[fall] + np.nan_to_num(f_off, nan=0.0) * (next_p - idx[fall])
        return t_on % n, t_off % n
