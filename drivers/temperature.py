"""Pavement temperature from a probe in the asphalt, read over Modbus RTU or TCP.

The temperature curve of the calibration chain corrects each vehicle at the pavement
temperature of its pass, so a roadside unit needs the pavement's temperature now, not a
fixed setting. The usual hardware is a PT100 or thermistor probe embedded near the strips
and a temperature transmitter on RS-485 (Modbus RTU) or a Modbus TCP I/O module; the
temperature sits in one input or holding register as a signed 16-bit integer in 0.1 °C
(some in 0.01 °C, some as a 32-bit float in two registers).

A thread of the driver's own reads the register every ``poll_interval_s`` and screens
each value before it is believed:

- outside ``plausible_c`` (default -40..85 °C): refused. Many transmitters read -200 or
  +850 °C on a broken wire or a shorted probe; such a value must never correct a weight.
- moved faster than ``max_rate_c_per_min`` (plus ``jump_margin_c`` for the transmitter's
  own noise) since the last accepted value: refused. A pavement warms a few degrees an
  hour; a step of tens of degrees is a loose contact. When the last accepted value has
  gone stale there is nothing recent to compare with, and the next plausible value is
  accepted: a wrong value accepted once cannot hold back the true ones longer than
  ``stale_after_s``.

Refused values are counted and logged at most once a minute per probe.
:meth:`TemperatureProbe.latest` gives the last accepted value while it is younger than
``stale_after_s``, else ``None``: the unit then weighs at its fixed setting and says so
(:meth:`TemperatureProbe.why_no_value` gives the words).

Connection URLs as :mod:`drivers.modbus_wim` (``tcp://HOST[:PORT]``,
``rtu:///dev/ttyUSB0?baud=9600&parity=N``). An exception answer (a wrong register or
table) is a failed read on a live connection; no answer at all closes the connection and
reconnects after 0.1 s, doubling to 5 s (:mod:`drivers.backoff`). Every wait for the
device is bounded by ``timeout_s``, so :meth:`TemperatureProbe.stop` returns within about
``timeout_s``.
"""

import logging
import math
import threading
import time
from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pymodbus.exceptions import ModbusException

from drivers.base import DeviceStatus
from drivers.errors import DeviceError, ProtocolError
from drivers.modbus_map import WORDS, decode_value, encode_value
from drivers.modbus_wim import ModbusPoller, ModbusUrl, SyncClient, parse_url
from drivers.readings import ReadingsQueue

log = logging.getLogger(__name__)

REFUSED_LOG_EVERY_S = 60.0
"""Refused values are logged at most this often per probe (with a count of the rest)."""

Encoding = Literal["int16", "uint16", "float32"]
FIELD_TYPE: dict[str, Literal["i16", "u16", "f32"]] = {"int16": "i16", "uint16": "u16",
                                                      "float32": "f32"}
DEFAULT_SCALE: dict[str, float] = {"int16": 0.1, "uint16": 0.1, "float32": 1.0}
"""°C per count when ``scale`` is not given: 0.1 °C for the integer encodings (the usual
transmitter), 1 for a float that already holds degrees."""


class TemperatureProbeSettings(BaseModel):
    """The configuration section of one pavement temperature probe."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field("temperature", min_length=1)
    url: ModbusUrl = Field(description="tcp://HOST[:PORT] or rtu:///dev/ttyX?baud=9600&parity=N")
    unit_id: int = Field(1, ge=0, le=255, description="Modbus unit (slave) id; RTU 1-247")
    address: int = Field(0, ge=0, le=65534, alias="register",  # "register": a BaseModel name
                         description="protocol address of the (first) register, 0-based: "
                         "register 30001 or 40001 of a manual is 0")
    register_type: Literal["input", "holding"] = Field(
        "input", description="input: function 4 (3xxxx); holding: function 3 (4xxxx)")
    encoding: Encoding = Field("int16", description="int16, uint16 or float32 (two "
                               "registers)")
    word_order: Literal["big", "little"] = Field(
        "big", description="float32 only: big = high word first (ABCD), little = CDAB")
    scale: float | None = Field(None, description="°C per count; default 0.1 for int16 "
                                "and uint16, 1 for float32")
    offset_c: float = Field(0.0, ge=-300, le=300,
                            description="added after scaling: °C = raw * scale + offset_c")
    poll_interval_s: float = Field(10.0, ge=0.01, le=600)
    timeout_s: float = Field(1.0, gt=0, le=10)
    stale_after_s: float = Field(120.0, gt=0, le=86_400,
                                 description="a value older than this is not used")
    plausible_c: tuple[float, float] = Field(
        (-40.0, 85.0), description="values outside [low, high] are refused")
    max_rate_c_per_min: float = Field(5.0, gt=0, le=1000,
                                      description="faster changes are refused")
    jump_margin_c: float = Field(0.5, ge=0, le=50, description="step always allowed "
                                 "between two reads (the transmitter's noise)")

    @field_validator("scale", "offset_c", "plausible_c", "max_rate_c_per_min",
                     "jump_margin_c")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        values = value if isinstance(value, tuple) else (value,)
        if any(v is not None and not math.isfinite(v) for v in values):
            raise ValueError(f"must be a finite number (got {value!r})")
        return value

    @field_validator("scale")
    @classmethod
    def _scale_not_zero(cls, scale: float | None) -> float | None:
        if scale is not None and scale == 0:
            raise ValueError("must not be 0: °C = raw * scale + offset_c (got 0)")
        return scale

    @field_validator("stale_after_s")
    @classmethod
    def _stale_after_a_poll(cls, stale_s: float, info: ValidationInfo) -> float:
        poll_s = info.data.get("poll_interval_s")
        if poll_s is not None and stale_s <= poll_s:
            raise ValueError(f"must be above poll_interval_s ({poll_s:g}), or every value "
                             f"is stale before the next read (got {stale_s:g})")
        return stale_s

    @field_validator("plausible_c", mode="before")
    @classmethod
    def _two_bounds(cls, bounds: Any) -> Any:
        if not isinstance(bounds, list | tuple) or len(bounds) != 2:
            raise ValueError(f"must be [low, high], two numbers in °C (got {bounds!r})")
        return bounds

    @field_validator("plausible_c")
    @classmethod
    def _range_ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if not bounds[0] < bounds[1]:
            raise ValueError(f"must be [low, high] with low below high (got {list(bounds)})")
        return bounds

    @property
    def counts_scale(self) -> float:
        """°C per count: ``scale``, or the encoding's default."""
        return self.scale if self.scale is not None else DEFAULT_SCALE[self.encoding]

    @property
    def words(self) -> int:
        """Registers one value takes."""
        return WORDS[FIELD_TYPE[self.encoding]]


def decode_temperature(registers: list[int], settings: TemperatureProbeSettings) -> float:
    """°C from the registers as read; ``ProtocolError`` for a wrong count or a float
    that is not a number.

    Examples
    --------
    >>> s = TemperatureProbeSettings(url="tcp://127.0.0.1")
    >>> decode_temperature([0xFF38], s)  # int16 -200 counts of 0.1 °C
    -20.0
    >>> decode_temperature([0x0000, 0x41B4], s.model_copy(update={"encoding": "float32",
    ...                                                            "word_order": "little"}))
    22.5
    """
    raw = decode_value(registers, FIELD_TYPE[settings.encoding], word_order=settings.word_order)
    if not math.isfinite(raw):
        raise ProtocolError(f"the probe's float32 registers {registers} hold {raw!r}, "
                            "not a temperature")
    return round(raw * settings.counts_scale + settings.offset_c, 6)


def encode_temperature(value_c: float, settings: TemperatureProbeSettings) -> list[int]:
    """The registers a transmitter configured as ``settings`` sends for ``value_c``; an
    integer out of its type's range is clipped to the range, as transmitters saturate.

    Examples
    --------
    >>> s = TemperatureProbeSettings(url="tcp://127.0.0.1")
    >>> encode_temperature(-20.0, s), encode_temperature(-200.0, s)
    ([65336], [63536])
    """
    type_ = FIELD_TYPE[settings.encoding]
    raw = (value_c - settings.offset_c) / settings.counts_scale
    if type_ != "f32":
        low, high = (-32768, 32767) if type_ == "i16" else (0, 65535)
        raw = min(max(round(raw), low), high)
    return encode_value(raw, type_, word_order=settings.word_order)


def refusal(value_c: float, t_s: float, last: tuple[float, float] | None,
            settings: TemperatureProbeSettings) -> str | None:
    """Why ``value_c`` read at ``t_s`` (seconds, monotonic) is not believed, or ``None``.

    ``last`` is the last accepted value and its time, or ``None`` when there is none
    young enough to compare with (see the module's notes).

    Examples
    --------
    >>> s = TemperatureProbeSettings(url="tcp://127.0.0.1")
    >>> refusal(-200.0, 0.0, None, s)
    'implausible: -200 °C is outside -40..85 °C'
    >>> refusal(31.0, 60.0, (20.0, 0.0), s)
    'jump: 20 to 31 °C in 60 s, above 5 °C/min'
    >>> refusal(24.0, 60.0, (20.0, 0.0), s) is None
    True
    """
    low, high = settings.plausible_c
    if not low <= value_c <= high:
        return f"implausible: {value_c:g} °C is outside {low:g}..{high:g} °C"
    if last is None:
        return None
    last_c, last_t_s = last
    dt_s = max(t_s - last_t_s, 0.0)
    allowed_c = settings.max_rate_c_per_min * dt_s / 60.0 + settings.jump_margin_c
    if abs(value_c - last_c) > allowed_c:
        return (f"jump: {last_c:g} to {value_c:g} °C in {dt_s:.3g} s, above "
                f"{settings.max_rate_c_per_min:g} °C/min")
    return None


class TemperatureProbe(ModbusPoller):
    """A pavement temperature probe polled over Modbus: the :class:`drivers.base.Device`
    protocol, plus :meth:`latest` for the temperature to weigh at."""

    def __init__(self, settings: TemperatureProbeSettings, *, max_readings: int = 1000
                 ) -> None:
        self.settings = settings
        self.name = settings.name
        self.endpoint = parse_url(settings.url)
        self._readings: ReadingsQueue[dict[str, Any]] = ReadingsQueue(max_readings)
        self._lock = threading.Lock()
        self._status = DeviceStatus(name=self.name, extra=self._zero_extra())
        self._last: tuple[float, float] | None = None  # (°C, monotonic s) last accepted
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ever_connected = False
        self._answered = False
        self._logged_at: float | None = None
        self._unlogged = 0

    @classmethod
    def from_settings(cls, settings: TemperatureProbeSettings) -> "TemperatureProbe":
        """The driver a settings section describes (the same as the constructor; kept
        for symmetry with the other drivers' factories)."""
        return cls(settings)

    # ------------------------------------------------------------------ the temperature

    def latest(self, now_s: float | None = None) -> float | None:
        """The last accepted temperature, °C, if younger than ``stale_after_s`` at
        ``now_s`` (host monotonic seconds, default now); else ``None``."""
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            last = self._last
        if last is None or now_s - last[1] > self.settings.stale_after_s:
            return None
        return last[0]

    def why_no_value(self, now_s: float | None = None) -> str | None:
        """Why :meth:`latest` gives ``None`` at ``now_s``, in words for the log; ``None``
        when it gives a value."""
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            last, error = self._last, self._status.last_error
        if last is None:
            why = f"temperature probe {self.name}: no plausible reading yet"
        elif now_s - last[1] > self.settings.stale_after_s:
            why = (f"temperature probe {self.name}: last plausible reading {last[0]:g} °C "
                   f"is {now_s - last[1]:.0f} s old (stale after "
                   f"{self.settings.stale_after_s:g} s)")
        else:
            return None
        return f"{why}; last error: {error}" if error else why

    # ------------------------------------------------------------------ Device protocol

    def start(self) -> None:
        """Start polling in the background (connecting happens there, with retries)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()  # the run before keeps its own, set
        with self._lock:
            self._status = DeviceStatus(name=self.name, extra=self._zero_extra())
            self._last = None
        self._readings.drain()  # values of the previous run are not this run's
        self._ever_connected = False
        self._thread = threading.Thread(target=self._run, name=f"temperature-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and close the connection; returns within about ``timeout_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.timeout_s + 1.0)
            self._thread = None
        self._update(connected=False)

    def readings(self, timeout_s: float = 0.0) -> list[dict[str, Any]]:
        """Accepted temperatures since the last call, oldest first (waiting up to
        ``timeout_s`` for one): ``{"kind": "temperature", "device", "temperature_c",
        "t_host_s"}``."""
        return self._readings.get(timeout_s)

    def get_status(self) -> DeviceStatus:
        """Counts and health now (a copy); ``extra`` holds ``reads``, ``failed_reads``,
        ``implausible``, ``jumps``, ``last_c`` and ``last_age_s``."""
        with self._lock:
            status = replace(self._status, extra=dict(self._status.extra))
            last = self._last
        if last is not None:
            status.extra["last_age_s"] = round(time.monotonic() - last[1], 3)
        return status

    def diagnose(self, status: DeviceStatus | None = None, seconds: float | None = None
                 ) -> list[str]:
        """Plain-words hints (see :func:`diagnose`); ``status`` defaults to now."""
        status = status if status is not None else self.get_status()
        return diagnose(status, seconds if seconds is not None else 0.0,
                        self.settings.stale_after_s)

    # ------------------------------------------------------------------ the thread

    def _zero_extra(self) -> dict[str, Any]:
        """The driver's own counters, beyond those of :class:`DeviceStatus`."""
        s = self.settings
        return {"url": s.url, "unit_id": s.unit_id, "register": s.address,
                "register_type": s.register_type, "reads": 0, "failed_reads": 0,
                "implausible": 0, "jumps": 0, "last_c": None, "last_age_s": None,
                "last_refused_c": None, "dropped_readings": 0}

    def _update(self, **changes: Any) -> None:
        """Change status fields under the lock."""
        with self._lock:
            for key, value in changes.items():
                setattr(self._status, key, value)

    @property
    def timeout_s(self) -> float:
        return self.settings.timeout_s

    @property
    def poll_interval_s(self) -> float:
        return self.settings.poll_interval_s

    def _poll(self, client: SyncClient) -> None:
        """One read: screened, then queued and kept, or counted and refused."""
        registers = self._read(client)
        if registers is None:
            return
        t_s = time.monotonic()
        try:
            value_c = decode_temperature(registers, self.settings)
        except ProtocolError as exc:
            self._refuse("implausible", None, f"{self.name}: {exc}")
            return
        with self._lock:
            last = self._last
        if last is not None and t_s - last[1] > self.settings.stale_after_s:
            last = None  # nothing recent to compare with
        why = refusal(value_c, t_s, last, self.settings)
        if why is not None:
            counter = "jumps" if why.startswith("jump") else "implausible"
            self._refuse(counter, value_c, f"{self.name}: {why}")
            return
        self._accept(value_c, t_s)

    def _read(self, client: SyncClient) -> list[int] | None:
        """The value's registers; ``None`` after an exception answer (counted, the
        connection kept); ``DeviceError`` when the probe does not answer."""
        s = self.settings
        read = (client.read_holding_registers if s.register_type == "holding"
                else client.read_input_registers)
        with self._lock:
            self._status.extra["reads"] += 1
        try:
            response = read(s.address, count=s.words, device_id=s.unit_id)
        except (ModbusException, OSError) as exc:
            self._failed(f"no answer reading {s.register_type} register {s.address} of "
                         f"unit {s.unit_id}: {exc}")
            raise DeviceError(f"no answer from unit {s.unit_id}: {exc}") from None
        self._mark_connected()
        if response.isError():
            self._failed(f"exception code {getattr(response, 'exception_code', '?')} "
                         f"reading {s.register_type} register {s.address} of unit "
                         f"{s.unit_id}")
            return None
        if len(response.registers) != s.words:
            self._failed(f"asked for {s.words} registers at {s.address}, got "
                         f"{len(response.registers)}")
            return None
        return list(response.registers)

    def _failed(self, message: str) -> None:
        """A read that gave no value: counted, its reason kept."""
        with self._lock:
            self._status.extra["failed_reads"] += 1
            self._status.last_error = f"{self.name}: {message}"

    def _mark_connected(self) -> None:
        """The probe answered: connected (a reconnection if it had been before)."""
        self._answered = True
        with self._lock:
            if not self._status.connected:
                self._status.connected = True
                self._status.reconnects += 1 if self._ever_connected else 0
                self._ever_connected = True

    def _accept(self, value_c: float, t_s: float) -> None:
        """A believed value: kept for :meth:`latest` and queued as a reading."""
        with self._lock:
            self._last = (value_c, t_s)
            self._status.frames += 1
            self._status.last_frame_at = t_s
            self._status.extra["last_c"] = value_c
        dropped = self._readings.put({"kind": "temperature", "device": self.name,
                                      "temperature_c": value_c, "t_host_s": t_s})
        if dropped:
            with self._lock:
                self._status.extra["dropped_readings"] += dropped

    def _refuse(self, counter: str, value_c: float | None, message: str) -> None:
        """A value not believed: counted, its reason kept, logged at most once a
        minute (with how many more were refused since)."""
        with self._lock:
            self._status.bad_frames += 1
            self._status.extra[counter] += 1
            self._status.extra["last_refused_c"] = value_c
            self._status.last_error = message
        now = time.monotonic()
        if self._logged_at is not None and now - self._logged_at < REFUSED_LOG_EVERY_S:
            self._unlogged += 1
            return
        more = f"; {self._unlogged} more since the last report" if self._unlogged else ""
        log.warning("%s (value refused%s)", message, more)
        self._logged_at, self._unlogged = now, 0


def diagnose(status: DeviceStatus, seconds: float, stale_after_s: float = 120.0
             ) -> list[str]:
    """Plain-language hints about a temperature probe after ``seconds`` of polling, one
    per finding, or a single ``ok`` line.

    Examples
    --------
    >>> broken = DeviceStatus("pavement", connected=True, bad_frames=6,
    ...                       extra={"url": "tcp://10.0.0.7", "implausible": 6,
    ...                              "last_refused_c": -200.0})
    >>> print(diagnose(broken, 60.0)[0])  # doctest: +NORMALIZE_WHITESPACE
    6 value(s) outside the plausible range (last -200 °C): a broken wire or a shorted
    probe (many transmitters read -200 or +850 °C then), or a wrong encoding or scale
    """
    x, hints = status.extra, []
    if not status.connected and status.frames == 0:
        hints.append(f"could not reach the probe: {status.last_error or 'no answer'}: "
                     "check the URL (address, port or serial line and its settings), the "
                     "unit id, the cable and the transmitter's power")
    elif x.get("failed_reads", 0) and status.frames == 0 and status.bad_frames == 0:
        hints.append(f"the transmitter answers but gives no value: {status.last_error}: "
                     "check register, register_type (input or holding) and unit_id")
    if x.get("implausible", 0):
        hints.append(f"{x['implausible']} value(s) outside the plausible range (last "
                     f"{_c(x.get('last_refused_c'))} °C): a broken wire or a shorted probe "
                     "(many transmitters read -200 or +850 °C then), or a wrong encoding "
                     "or scale")
    if x.get("jumps", 0):
        hints.append(f"{x['jumps']} value(s) jumped faster than the pavement can change: "
                     "a loose contact, or interference on the probe's cable")
    age = x.get("last_age_s")
    if status.frames and age is not None and age > stale_after_s:
        hints.append(f"the last plausible value is {age:.0f} s old (stale after "
                     f"{stale_after_s:g} s): the unit weighs at its fixed temperature")
    if status.reconnects:
        hints.append(f"the connection dropped and came back {status.reconnects} time(s): "
                     "check cabling and power")
    if not hints:
        hints.append(f"ok: {status.frames} readings in {seconds:.0f} s, last "
                     f"{_c(x.get('last_c'))} °C, no problem seen")
    return hints


def _c(value: float | None) -> str:
    """A temperature for a hint: ``-200`` rather than ``-200.0``; ``none`` if missing."""
    return "none" if value is None else f"{value:g}"
