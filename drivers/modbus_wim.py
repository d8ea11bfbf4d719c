"""Vehicle records from a WIM controller over Modbus RTU or TCP, by polling its registers.

The controller writes each weighed vehicle into a record block and then increments a
new-record counter (the layout is a :class:`~drivers.modbus_map.RegisterMap`). A thread
of the driver's own reads the counter every ``poll_interval_s``; when it has moved, it
reads the record block(s), decodes them, queues the readings and writes the acknowledge
register if the map has one. Records the controller overwrote before a poll could read
them (or while it read them) are counted as missed; a record read twice (same sequence)
is dropped.

Connection URLs:

``tcp://HOST[:PORT]``
    Modbus TCP; the port defaults to 502. IPv6 hosts in brackets: ``tcp://[::1]:1502``.
``rtu:///dev/ttyUSB0?baud=9600&parity=N&bytesize=8&stopbits=1``
    Modbus RTU on a serial line (the path after ``rtu://``; the query is optional, the
    defaults are 9600 baud, 8N1; parity N, E or O).

The first counter read after :meth:`ModbusWimDevice.start` is the baseline: a record
already in the block then is not taken (it may have been taken by the previous run).
After a lost connection the driver keeps its last counter value, so records weighed
during the outage are read (or counted as missed) once the controller answers again.
Reconnection waits 0.1 s, doubling to 5 s; every wait for the device is bounded by
``timeout_s``, so :meth:`~ModbusWimDevice.stop` returns within about ``timeout_s``.
"""

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException

from drivers.backoff import Backoff
from drivers.base import DeviceStatus
from drivers.errors import DeviceError, ProtocolError
from drivers.modbus_map import (
    WORDS,
    RegisterMap,
    counter_advance,
    counters_to_read,
    decode_record,
    decode_value,
    encode_value,
    load_register_map,
)
from drivers.readings import ReadingsQueue
from zhichao.errors import ConfigError

RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
SERIAL_QUERY = {"baud": 9600, "parity": "N", "bytesize": 8, "stopbits": 1}

SyncClient = ModbusTcpClient | ModbusSerialClient


@dataclass(frozen=True)
class Endpoint:
    """Where the controller is: a TCP host and port, or a serial line."""

    kind: Literal["tcp", "rtu"]
    host: str = ""
    port: int = 502
    path: str = ""
    baud: int = 9600
    parity: str = "N"
    bytesize: int = 8
    stopbits: int = 1


def parse_url(url: str) -> Endpoint:
    """The endpoint a ``tcp://`` or ``rtu://`` URL names; ``ConfigError`` otherwise.

    Examples
    --------
    >>> parse_url("tcp://192.168.1.20")
    Endpoint(kind='tcp', host='192.168.1.20', port=502, path='', baud=9600, parity='N', bytesize=8, stopbits=1)
    >>> parse_url("rtu:///dev/ttyS1?baud=19200&parity=E").baud
    19200
    """  # noqa: E501
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        return _tcp_endpoint(url, parts)
    if parts.scheme == "rtu":
        return _rtu_endpoint(url, parts)
    raise ConfigError(f"Modbus URL {url!r}: scheme must be 'tcp' or 'rtu' "
                      f"(got {parts.scheme!r})")


def _tcp_endpoint(url: str, parts: Any) -> Endpoint:
    """``tcp://HOST[:PORT]``."""
    try:
        port = parts.port or 502
    except ValueError:
        raise ConfigError(f"Modbus URL {url!r}: port must be 1..65535 "
                          f"(got {parts.netloc.rpartition(':')[2]!r})") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"Modbus URL {url!r}: must be tcp://HOST[:PORT] (got {url!r})")
    return Endpoint(kind="tcp", host=parts.hostname, port=port)


def _rtu_endpoint(url: str, parts: Any) -> Endpoint:
    """``rtu://PATH?baud=..&parity=..&bytesize=..&stopbits=..``."""
    path = parts.netloc + parts.path
    if not path:
        raise ConfigError(f"Modbus URL {url!r}: needs a serial device, e.g. "
                          f"rtu:///dev/ttyUSB0 (got {url!r})")
    query = dict(SERIAL_QUERY)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in SERIAL_QUERY:
            raise ConfigError(f"Modbus URL {url!r}: query option {key!r} is not known; "
                              f"allowed: {', '.join(SERIAL_QUERY)} (got {key}={value})")
        query[key] = value
    allowed = {"baud": None, "parity": ("N", "E", "O"), "bytesize": ("7", "8"),
               "stopbits": ("1", "2")}
    for key, choices in allowed.items():
        text = str(query[key])
        ok = text.isdigit() and int(text) > 0 if choices is None else text in choices
        if not ok:
            what = "a whole number above 0" if choices is None else " or ".join(choices)
            raise ConfigError(f"Modbus URL {url!r}: query option {key!r} must be {what} "
                              f"(got {text!r})")
    return Endpoint(kind="rtu", path=path, baud=int(query["baud"]),
                    parity=str(query["parity"]), bytesize=int(query["bytesize"]),
                    stopbits=int(query["stopbits"]))


def open_client(endpoint: Endpoint, timeout_s: float) -> SyncClient:
    """A connected synchronous pymodbus client; ``DeviceError`` when it cannot connect.

    ``retries=0``: the driver's own loop retries, so one request never blocks longer
    than ``timeout_s``.
    """
    client: SyncClient
    if endpoint.kind == "tcp":
        client = ModbusTcpClient(endpoint.host, port=endpoint.port, timeout=timeout_s,
                                 retries=0)
        where = f"{endpoint.host}:{endpoint.port}"
    else:
        client = ModbusSerialClient(endpoint.path, baudrate=endpoint.baud,
                                    parity=endpoint.parity, bytesize=endpoint.bytesize,
                                    stopbits=endpoint.stopbits, timeout=timeout_s,
                                    retries=0)
        where = endpoint.path
    if not client.connect():
        client.close()
        raise DeviceError(f"cannot connect to {where}")
    return client


def _parses(url: str) -> str:
    """A settings URL that :func:`parse_url` takes (its error as pydantic's, so the
    settings error names the option)."""
    try:
        parse_url(url)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return url


ModbusUrl = Annotated[str, AfterValidator(_parses)]
"""A Modbus TCP or RTU URL, checked when the settings load."""


class ModbusWimSettings(BaseModel):
    """The configuration section of one Modbus WIM controller."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("wim", min_length=1)
    url: ModbusUrl = Field(description="tcp://HOST[:PORT] or rtu:///dev/ttyX?baud=9600&parity=N")
    register_map: Path = Field(description="the controller's register map (YAML)")
    poll_interval_s: float = Field(0.1, gt=0, le=60)
    timeout_s: float = Field(0.5, gt=0, le=10)

class ModbusPoller:
    """A Modbus device polled on a thread of its own: connect, call :meth:`_poll` every
    ``poll_interval_s`` until the link fails (``_poll`` raises DeviceError) or the device
    stops, wait (0.1 s doubling to 5 s, from the start again once the device answered:
    ``_poll`` sets ``_answered``), connect again. The WIM controller and the temperature
    probe share it; each gives ``name``, ``endpoint``, ``timeout_s``,
    ``poll_interval_s``, ``_stop``, ``_update`` and ``_poll``."""

    name: str
    endpoint: Endpoint
    timeout_s: float
    poll_interval_s: float
    _stop: threading.Event
    _answered: bool

    def _update(self, **changes: Any) -> None:
        raise NotImplementedError

    def _poll(self, client: SyncClient) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        """Connect, poll until the link fails, wait (doubling), connect again. The run
        keeps the stop event it started with: a thread that outlives the join of
        ``stop()`` (a read hanging on a loaded host) still ends, though a new run started
        since has an event of its own."""
        stop = self._stop
        backoff = Backoff(RECONNECT_MIN_S, RECONNECT_MAX_S)
        while not stop.is_set():
            self._answered = False
            try:
                client = open_client(self.endpoint, self.timeout_s)
                try:
                    self._session(client, stop)
                finally:
                    client.close()
            except DeviceError as exc:
                self._update(connected=False, last_error=f"{self.name}: {exc}")
            if self._answered:
                backoff.reset()
            if stop.wait(backoff.next()):
                break

    def _session(self, client: SyncClient, stop: threading.Event) -> None:
        """Poll on one connection until stopped, or until the device fails (raises)."""
        next_poll = time.monotonic()
        while not stop.is_set():
            self._poll(client)
            next_poll = max(next_poll + self.poll_interval_s, time.monotonic())
            stop.wait(next_poll - time.monotonic())


class ModbusWimDevice(ModbusPoller):
    """A WIM controller polled over Modbus: the :class:`drivers.base.Device` protocol."""

    def __init__(self, name: str, url: str, register_map: RegisterMap, *,
                 poll_interval_s: float = 0.1, timeout_s: float = 0.5,
                 max_readings: int = 10_000) -> None:
        self.name = name
        self.url = url
        self.endpoint = parse_url(url)
        self.map = register_map
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self._readings: ReadingsQueue[dict[str, Any]] = ReadingsQueue(max_readings)
        self._status_lock = threading.Lock()
        self._status = DeviceStatus(name=name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_counter: int | None = None
        self._acked: int | None = None  # counter value last acknowledged
        self._last_sequence: int | None = None
        self._missed_before = 0  # missed since the last record taken
        self._ever_connected = False
        self._answered = False  # the device answered on the current connection

    @classmethod
    def from_settings(cls, settings: ModbusWimSettings, base_dir: Path | None = None
                      ) -> "ModbusWimDevice":
        """The driver a settings section describes (its map path relative to
        ``base_dir``, usually the settings file's folder)."""
        path = settings.register_map
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return cls(settings.name, settings.url, load_register_map(path),
                   poll_interval_s=settings.poll_interval_s, timeout_s=settings.timeout_s)

    # ------------------------------------------------------------------ Device protocol

    def start(self) -> None:
        """Start polling in the background (connecting happens there, with retries)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()  # the run before keeps its own, set
        self._last_counter = None
        self._missed_before = 0
        self._ever_connected = False
        self._status = DeviceStatus(name=self.name, extra=self._zero_extra())
        self._thread = threading.Thread(target=self._run, name=f"modbus-wim-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and close the connection; returns within about ``timeout_s``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1.0)
            self._thread = None
        self._update(connected=False)

    def readings(self, timeout_s: float = 0.0) -> list[dict[str, Any]]:
        """Records decoded since the last call, oldest first (waiting up to
        ``timeout_s`` for one)."""
        return self._readings.get(timeout_s)

    def get_status(self) -> DeviceStatus:
        """Counts and health now (a copy)."""
        with self._status_lock:
            return replace(self._status, extra=dict(self._status.extra))

    def diagnose(self, status: DeviceStatus | None = None, seconds: float | None = None
                 ) -> list[str]:
        """Plain-words hints (see :func:`diagnose`); ``status`` defaults to now."""
        status = status if status is not None else self.get_status()
        return diagnose(status, seconds if seconds is not None else 0.0)

    # ------------------------------------------------------------------ the thread

    def _zero_extra(self) -> dict[str, Any]:
        """The driver's own counters, beyond those of :class:`DeviceStatus`."""
        return {"url": self.url, "counter": None, "missed_records": 0, "duplicates": 0,
                "counter_resets": 0, "acks": 0, "dropped_readings": 0}

    def _update(self, **changes: Any) -> None:
        """Change status fields under the lock."""
        with self._status_lock:
            for key, value in changes.items():
                setattr(self._status, key, value)

    def _count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to one of the ``extra`` counters."""
        with self._status_lock:
            self._status.extra[key] += n

    def _poll(self, client: SyncClient) -> None:
        """One look at the counter, and whatever it says is new."""
        current = self._read_counter(client)
        self._mark_connected(current)
        if self._last_counter is None:
            self._last_counter = self._acked = current
            return
        step, restarted = counter_advance(self._last_counter, current,
                                          bits=self.map.counter_bits)
        if restarted:
            self._count("counter_resets")
        if step > 0:
            self._take_new(client, current, step)
        if self._acked != self._last_counter:  # new records, or an ack that failed
            self._acknowledge(client, self._last_counter)

    def _take_new(self, client: SyncClient, current: int, step: int) -> None:
        """Read the ``step`` records up to counter ``current`` that are still there.

        The counter is read again after the blocks: the controller may have gone on
        while the poll read (the driver stalled, the line is slow), and a block whose
        slot a newer record has taken since is counted as missed, never taken under the
        wrong counter (it would come again, a vehicle twice, when its own counter is
        read). Nothing is taken if a read fails: the next poll reads them all again."""
        bits, slots = self.map.counter_bits, self.map.record.slots
        wanted = counters_to_read(current, step, slots=slots, bits=bits)
        if step > len(wanted):  # overwritten before this poll: gone for good
            self._miss(step - len(wanted))
            self._last_counter = (wanted[0] - 1) % (1 << bits)
        blocks = [self._read_block(client, counter) for counter in wanted]
        after = self._read_counter(client)
        for counter, registers in zip(wanted, blocks, strict=True):
            ahead, restarted = counter_advance(counter, after, bits=bits)
            if restarted or ahead >= slots:  # its slot holds a newer record by now
                self._miss(1)
            else:
                self._take(registers, counter)
            self._last_counter = counter

    def _miss(self, n: int) -> None:
        """``n`` records gone: counted, and told with the next record taken."""
        self._count("missed_records", n)
        self._missed_before += n

    def _mark_connected(self, counter: int) -> None:
        """The controller answered: connected (a reconnection if it had been before)."""
        self._answered = True
        status = self.get_status()
        if not status.connected:
            self._update(connected=True, reconnects=status.reconnects
                         + (1 if self._ever_connected else 0))
            self._ever_connected = True
        with self._status_lock:
            self._status.extra["counter"] = counter

    def _take(self, registers: list[int], counter: int) -> None:
        """Decode one block and queue it; a bad block is counted, a repeat dropped."""
        try:
            record = decode_record(self.map, registers)
        except ProtocolError as exc:
            with self._status_lock:
                self._status.bad_frames += 1
                self._status.last_error = f"{self.name}: counter {counter}: {exc}"
            return
        if record.sequence == self._last_sequence:
            self._count("duplicates")
            return
        self._last_sequence = record.sequence
        reading = {"device": self.name, "counter": counter,
                   "missed_before": self._missed_before, "host_t_s": time.time(),
                   **record.as_reading()}
        self._missed_before = 0
        with self._status_lock:
            self._status.frames += 1
            self._status.last_frame_at = time.monotonic()
        dropped = self._readings.put(reading)
        if dropped:
            self._count("dropped_readings", dropped)

    # ------------------------------------------------------------------ registers

    def _read(self, client: SyncClient, address: int, count: int) -> list[int]:
        """``count`` registers from protocol ``address``, in reads the device accepts."""
        read = (client.read_holding_registers if self.map.table == "holding"
                else client.read_input_registers)
        out: list[int] = []
        step = self.map.max_registers_per_read
        for start in range(address, address + count, step):
            n = min(step, address + count - start)
            try:
                response = read(start, count=n, device_id=self.map.device_id)
            except (ModbusException, OSError) as exc:
                raise DeviceError(f"no answer reading {n} registers at {start}: {exc}"
                                  ) from None
            if response.isError():
                raise DeviceError(f"exception code {getattr(response, 'exception_code', '?')}"
                                  f" reading {n} registers at {start}")
            if len(response.registers) != n:
                raise DeviceError(f"asked for {n} registers at {start}, got "
                                  f"{len(response.registers)}")
            out += response.registers
        return out

    def _read_counter(self, client: SyncClient) -> int:
        """The new-record counter now."""
        words = self._read(client, self.map.counter_pdu, WORDS[self.map.counter.type])
        return int(decode_value(words, self.map.counter.type, word_order=self.map.word_order,
                                byte_order=self.map.byte_order))

    def _read_block(self, client: SyncClient, counter: int) -> list[int]:
        """The record block that holds the record numbered ``counter``."""
        return self._read(client, self.map.slot_pdu(counter), self.map.record.length)

    def _acknowledge(self, client: SyncClient, counter: int) -> None:
        """Tell the controller the records up to ``counter`` are taken (if it asks)."""
        ack = self.map.ack
        if ack is None or self.map.ack_pdu is None:
            self._acked = counter
            return
        value = counter if ack.value == "counter" else ack.value
        value %= 1 << (16 * WORDS[ack.type])
        words = encode_value(value, ack.type, word_order=self.map.word_order,
                             byte_order=self.map.byte_order)
        try:
            if len(words) == 1:  # function 6, which every controller with a handshake has
                response = client.write_register(self.map.ack_pdu, words[0],
                                                 device_id=self.map.device_id)
            else:
                response = client.write_registers(self.map.ack_pdu, words,
                                                  device_id=self.map.device_id)
        except (ModbusException, OSError) as exc:
            raise DeviceError(f"no answer writing the ack register: {exc}") from None
        if response.isError():
            raise DeviceError(f"exception code {getattr(response, 'exception_code', '?')} "
                              f"writing the ack register at {self.map.ack_pdu}")
        self._acked = counter
        self._count("acks")


def diagnose(status: DeviceStatus, seconds: float) -> list[str]:
    """Plain-language hints about a Modbus WIM controller after ``seconds`` of polling,
    one per finding, or a single ``ok`` line.

    Examples
    --------
    >>> lost = DeviceStatus("wim", connected=True, frames=40,
    ...                     extra={"url": "tcp://10.0.0.5", "missed_records": 3})
    >>> print(diagnose(lost, 60.0)[0])  # doctest: +NORMALIZE_WHITESPACE
    3 record(s) were overwritten by the controller before they were read: poll
    faster (poll_interval_s) or give the map more record slots
    """
    x, hints = status.extra, []
    if not status.connected and status.frames == 0:
        hints.append(f"could not reach the device: {status.last_error or 'no answer'}: "
                     "check the URL (address, port or serial line and its settings), the "
                     "cable and that the controller's Modbus server is on")
    elif status.frames == 0 and status.bad_frames == 0:
        hints.append(f"the device answers but sent nothing to decode in {seconds:g} s: "
                     "no traffic, or the new-record counter is not where the map says")
    if status.bad_frames > status.frames:
        hints.append(f"{status.bad_frames} of {status.frames + status.bad_frames} records "
                     "failed to decode: check the register map (addresses, word order, "
                     "scaling)")
    if x.get("missed_records", 0):
        hints.append(f"{x['missed_records']} record(s) were overwritten by the controller "
                     "before they were read: poll faster (poll_interval_s) or give the map "
                     "more record slots")
    if x.get("dropped_readings", 0):
        hints.append(f"{x['dropped_readings']} record(s) were dropped because nobody took "
                     "them: the program reading this device is stalled")
    if status.reconnects:
        hints.append(f"the connection dropped and came back {status.reconnects} time(s): "
                     "check cabling and power")
    if not hints:
        hints.append(f"ok: {status.frames} records in {seconds:.0f} s, no problem seen")
    return hints
