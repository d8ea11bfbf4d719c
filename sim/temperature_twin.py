"""A simulated pavement temperature transmitter on a real Modbus server.

What :mod:`drivers.temperature` talks to in the tests: pymodbus' own server, answering
with the register(s) a transmitter configured like the driver's settings would send. The
temperature comes from :meth:`sim.sensor.Climate.pavement_c` at the twin's clock, or from
a value set with :meth:`TemperatureTwin.set_value`. Faults:

- :meth:`TemperatureTwin.break_wire`: the transmitter reads ``broken_wire_c`` (-200 °C,
  -2000 counts of 0.1 °C), as many do on an open probe;
- :meth:`TemperatureTwin.go_silent`: the transmitter does not answer at all (a dead
  RS-485 node, or a wrong unit id: the server ignores the request);
- :meth:`TemperatureTwin.stop` / :meth:`TemperatureTwin.start`: the server goes away and
  comes back on the same port or path.

Only a read of the right table (function 4 for input, 3 for holding) starting at the
configured register is answered with data; any other read gets exception 2 (illegal
address), as a transmitter answers a misconfigured driver.

Transports as every Modbus twin (:mod:`sim.modbus_server`): TCP on ``127.0.0.1`` (port
chosen by the OS unless given), or RTU between two pseudo-terminals linked by ``socat``.
"""

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.temperature import TemperatureProbeSettings, encode_temperature
from sim.modbus_server import ModbusServerTwin
from sim.sensor import Climate

BROKEN_WIRE_C = -200.0
"""What the twin's transmitter reads on an open probe (-2000 counts of 0.1 °C)."""
FUNCTION_CODE = {"holding": 3, "input": 4}


class TemperatureTwin(ModbusServerTwin):
    """A temperature transmitter served by pymodbus (TCP or RTU,
    :class:`sim.modbus_server.ModbusServerTwin`), configured as the driver's ``settings``
    (register, table, encoding, scale, offset, unit id; the URL in them is not used: the
    twin's own is :attr:`url`). A request it does not answer goes unanswered
    (``ignore_missing_devices``), as a silent node on a bus.
    """

    what = "temperature twin"
    ignore_missing_devices = True

    def __init__(self, settings: TemperatureProbeSettings, *,
                 transport: Literal["tcp", "rtu"] = "tcp", port: int = 0, baud: int = 115200,
                 climate: Climate | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.climate = climate if climate is not None else Climate()
        self.clock = clock
        self.requests = 0
        self._value_c: float | None = None
        self._broken = False
        self._silent = False
        self._lock = threading.Lock()
        super().__init__(transport=transport, port=port, baud=baud)

    # ------------------------------------------------------------------ what it reads

    def set_value(self, value_c: float | None) -> None:
        """Read ``value_c`` from now on; ``None``: the climate's pavement temperature."""
        with self._lock:
            self._value_c = value_c

    def break_wire(self, broken: bool = True) -> None:
        """Open (or, with ``False``, mend) the probe's wire."""
        with self._lock:
            self._broken = broken

    def go_silent(self, silent: bool = True) -> None:
        """Stop (or, with ``False``, resume) answering requests."""
        with self._lock:
            self._silent = silent

    def value_c(self) -> float:
        """The temperature the transmitter reads now, °C."""
        with self._lock:
            value, broken = self._value_c, self._broken
        if broken:
            return BROKEN_WIRE_C
        return value if value is not None else self.climate.pavement_c(self.clock())

    async def serve(  # noqa: PLR0917 - pymodbus' SimAction calls it with six positionals
        self, function_code: int, start_address: int, address: int, count: int,
        current: list[int], values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus' SimDevice hook on every request: the temperature's registers, an
        illegal address for any other read or a write, or no answer at all."""
        with self._lock:
            self.requests += 1
            silent = self._silent
        if silent:  # the server then sends nothing (ignore_missing_devices)
            raise NoSuchIdException("the twin is silent")
        s = self.settings
        if (values is not None or function_code != FUNCTION_CODE[s.register_type]
                or address != s.address or count > s.words):
            return ExcCodes.ILLEGAL_ADDRESS
        words = encode_temperature(self.value_c(), s)
        at = address - start_address
        current[at:at + count] = words[:count]
        return None

    def device(self) -> SimDevice:
        """The transmitter's registers, answered by :meth:`serve`."""
        return SimDevice(self.settings.unit_id, simdata=SimData(
            0, count=self.settings.address + 2, datatype=DataType.REGISTERS),
            action=self.serve)
