"""What a static scale indicator reports, and when its weight counts as stable.

Shared by the indicator protocols (:mod:`drivers.xk3190`, :mod:`drivers.toledo`), used to
weigh reference trucks during calibration: only a stable weight may be taken as the
reference. Some protocols carry the indicator's own motion flag (Toledo's SWB bit 3);
others (XK3190 continuous output) do not, and the driver judges stability itself from a
window of readings, as an indicator's motion detection does (OIML R76: the weight stays
within a band of divisions for a while).
"""

from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class ScaleReading:
    """One weight display of an indicator, converted to kg.

    ``motion`` is the indicator's own motion flag, None when the protocol has none;
    ``stable`` is the driver's verdict (see :class:`Stability`); ``resolution_kg`` is the
    weight of one step of the least significant displayed digit.
    """

    weight_kg: float
    resolution_kg: float
    stable: bool = False
    motion: bool | None = None
    net: bool = False
    tare_kg: float | None = None
    out_of_range: bool = False
    unit: str = "kg"
    protocol: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A plain dict."""
        return {"kind": "scale", **asdict(self)}


class Stability:
    """Stable when the last ``count`` weights lie within ``tolerance_divisions``.

    A division is ``division_kg`` when set (the scale interval ``e`` of the installed
    scale), else the reading's own ``resolution_kg``. When the indicator reports a
    motion flag, that flag decides: the indicator was set up for its scale, and the
    window would only repeat its judgement later. A reading out of range is never stable.

    Examples
    --------
    >>> s = Stability(count=3)
    >>> [s.update(w, 10.0) for w in (1000, 1500, 1990, 2000, 2000, 2010, 2030)]
    [False, False, False, False, True, True, False]
    """

    def __init__(self, count: int = 5, tolerance_divisions: float = 1.0,
                 division_kg: float | None = None) -> None:
        if count < 1 or tolerance_divisions < 0:
            raise ValueError(f"stability needs count >= 1 and tolerance_divisions >= 0 "
                             f"(got {count}, {tolerance_divisions})")
        self.count = count
        self.tolerance_divisions = tolerance_divisions
        self.division_kg = division_kg
        self._window: deque[float] = deque(maxlen=count)

    def update(self, weight_kg: float, resolution_kg: float) -> bool:
        """Add one weight; whether the last ``count`` agree within the tolerance."""
        self._window.append(weight_kg)
        if len(self._window) < self.count:
            return False
        division = self.division_kg or resolution_kg
        band = max(self._window) - min(self._window)
        return band <= self.tolerance_divisions * division * (1 + 1e-9)

    def apply(self, reading: ScaleReading) -> ScaleReading:
        """``reading`` with ``stable`` set: the stream stage for a framer."""
        steady = self.update(reading.weight_kg, reading.resolution_kg)
        if reading.motion is not None:
            steady = not reading.motion
        return replace(reading, stable=steady and not reading.out_of_range)
