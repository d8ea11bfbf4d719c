"""A simulated WIM controller that serves vehicle records on a real Modbus server.

The twin is what :mod:`drivers.modbus_wim` talks to in the demo and the tests: the same
bytes as a roadside controller, from pymodbus' own server. Its registers follow a
:class:`~drivers.modbus_map.RegisterMap`; a feeder thread takes the simulated traffic
(:func:`sim.traffic.generate_traffic`) at the vehicles' times, or ``speedup`` times
faster, and for each one writes the record block, then increments the counter, as a
controller does. Writes are accepted only on the ack register, which the twin records.

Transports:

- TCP on ``127.0.0.1`` and a port the OS chooses (or one given); :attr:`ModbusTwin.url`
  is ``tcp://127.0.0.1:PORT``.
- RTU over a pair of linked pseudo-terminals made by ``socat`` (a Debian package that
  ``make system`` installs). A single ``os.openpty()`` pair does not do: pymodbus' serial
  server and client both open their port by path through pyserial, and a pty master has
  no path (opening ``/dev/ptmx`` again makes a new pair). The server listens on one end,
  :attr:`ModbusTwin.url` names the other: ``rtu:///tmp/.../client?baud=115200``.

:meth:`ModbusTwin.stop` takes the server away and keeps the registers (the cable pulled
while the controller keeps weighing); :meth:`ModbusTwin.start` serves them again on the
same port or path.
"""

import threading
import time
from collections.abc import Sequence
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.errors import DeviceError
from drivers.modbus_map import (
    WORDS,
    RegisterMap,
    WimRecord,
    decode_value,
    encode_record,
    encode_value,
)
from sim.modbus_server import ModbusServerTwin
from sim.traffic import BAD_DRIVING, VehicleTruth

EPOCH_S = 1_767_225_600.0
"""Unix time the simulated controller's clock shows at traffic time 0 (2026-01-01 UTC)."""

FLAG_BITS: dict[str, int] = {kind: 1 << i for i, kind in enumerate(BAD_DRIVING)}
"""The twin's status bits: bit i set for the i-th kind of abnormal driving."""


def record_from_truth(truth: VehicleTruth, *, sequence: int, epoch_s: float = EPOCH_S
                      ) -> WimRecord:
    """What an ideal controller reports for a simulated vehicle (static loads)."""
    return WimRecord(
        sequence=sequence, t_s=epoch_s + truth.t0_s, lane=truth.lane,
        speed_mps=float(truth.speed_mps),
        axle_loads_kg=tuple(float(x) for x in truth.axle_loads_kg),
        spacings_m=tuple(float(x) for x in truth.spacings_m), gvw_kg=truth.gvw_kg,
        flags=FLAG_BITS.get(truth.bad or "", 0),
    )


class ControllerMemory:
    """The controller's registers: written by the feeder, served by the Modbus server."""

    def __init__(self, reg_map: RegisterMap) -> None:
        _check_one_memory(reg_map)
        self.map = reg_map
        self.registers = [0] * reg_map.registers_end()
        self.counter = 0
        self.acks: list[int] = []
        self._lock = threading.Lock()

    def publish(self, records: Sequence[WimRecord]) -> None:
        """Weigh ``records`` one after the other: each into its block, then the counter.

        Several at once is a controller that weighed them all between two polls.
        """
        with self._lock:
            for record in records:
                self.counter = (self.counter + 1) % (1 << self.map.counter_bits)
                at = self.map.slot_pdu(self.counter)
                self.registers[at:at + self.map.record.length] = encode_record(self.map,
                                                                               record)
                self._write_counter()

    def set_counter(self, value: int) -> None:
        """Put the counter at ``value`` (a restarted or long-running controller)."""
        with self._lock:
            self.counter = value % (1 << self.map.counter_bits)
            self._write_counter()

    def _write_counter(self) -> None:
        words = encode_value(self.counter, self.map.counter.type,
                             word_order=self.map.word_order, byte_order=self.map.byte_order)
        self.registers[self.map.counter_pdu:self.map.counter_pdu + len(words)] = words

    async def serve(  # noqa: PLR0917 - pymodbus' SimAction calls it with six positionals
        self, function_code: int, start_address: int, address: int, count: int,
        current: list[int], values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus' SimDevice hook on every request: answer from this memory; refuse
        writes anywhere but the ack register, keep those."""
        del function_code
        with self._lock:
            if values is not None:
                refused = self._write(address, [int(v) for v in values])
                if refused is not None:
                    return refused
            at = address - start_address
            current[at:at + count] = self.registers[address:address + count]
        return None

    def _write(self, address: int, values: list[int]) -> ExcCodes | None:
        """A write from the poller: only the ack register, whole."""
        ack, at = self.map.ack, self.map.ack_pdu
        if ack is None or at is None or address != at or len(values) != WORDS[ack.type]:
            return ExcCodes.ILLEGAL_ADDRESS
        self.registers[at:at + len(values)] = values
        self.acks.append(int(decode_value(values, ack.type, word_order=self.map.word_order,
                                          byte_order=self.map.byte_order)))
        return None


def _check_one_memory(reg_map: RegisterMap) -> None:
    """The twin keeps input and holding registers in one memory (pymodbus' shared block):
    refuse a map whose ack, in the holding table, shares an address with input registers."""
    at = reg_map.ack_pdu
    if at is None or reg_map.ack is None:
        return
    ack = range(at, at + WORDS[reg_map.ack.type])
    counter = range(reg_map.counter_pdu, reg_map.counter_pdu + WORDS[reg_map.counter.type])
    start = reg_map.record.address - reg_map.address_base
    block = range(start, start + reg_map.record.length * reg_map.record.slots)
    for name, span in (("counter", counter), ("record block", block)):
        if ack.start < span.stop and span.start < ack.stop:
            raise DeviceError(f"the Modbus twin keeps one memory for both tables: the ack "
                              f"register (protocol address {at}) may not share an address "
                              f"with the {name} ({span.start}-{span.stop - 1})")


class Feeder:
    """Publishes simulated vehicles at their times, ``speedup`` times faster."""

    def __init__(self, memory: ControllerMemory, vehicles: Sequence[VehicleTruth], *,
                 speedup: float = 1.0, first_sequence: int = 1) -> None:
        self.memory = memory
        self.records = [record_from_truth(v, sequence=first_sequence + i)
                        for i, v in enumerate(vehicles)]
        self._times_s = [v.t0_s for v in vehicles]
        self.speedup = speedup
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modbus-twin-feeder",
                                        daemon=True)

    def start(self) -> "Feeder":
        """Begin publishing (the first vehicle at once)."""
        self._thread.start()
        return self

    def _run(self) -> None:
        t_start = time.monotonic()
        for record, t_s in zip(self.records, self._times_s, strict=True):
            due = t_start + (t_s - self._times_s[0]) / self.speedup
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self.memory.publish([record])
            self.published += 1

    def join(self, timeout_s: float) -> bool:
        """Wait until every vehicle is published; False when ``timeout_s`` ran out."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Stop publishing."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)


class ModbusTwin(ModbusServerTwin):
    """A pymodbus server (TCP or RTU, :class:`sim.modbus_server.ModbusServerTwin`)
    holding a :class:`ControllerMemory`."""

    what = "Modbus twin"

    def __init__(self, reg_map: RegisterMap, *, transport: Literal["tcp", "rtu"] = "tcp",
                 port: int = 0, baud: int = 115200) -> None:
        self.map = reg_map
        self.memory = ControllerMemory(reg_map)
        super().__init__(transport=transport, port=port, baud=baud)

    def device(self) -> SimDevice:
        """The controller's registers, answered from its memory."""
        return SimDevice(self.map.device_id, simdata=SimData(
            0, count=self.map.registers_end(), datatype=DataType.REGISTERS),
            action=self.memory.serve)

    def feed(self, vehicles: Sequence[VehicleTruth], *, speedup: float = 1.0,
             first_sequence: int = 1) -> Feeder:
        """Start publishing ``vehicles`` at their times (``speedup`` times faster)."""
        return Feeder(self.memory, vehicles, speedup=speedup,
                      first_sequence=first_sequence).start()
