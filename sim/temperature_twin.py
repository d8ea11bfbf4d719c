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

Transports as :class:`sim.modbus_twin.ModbusTwin`: TCP on ``127.0.0.1`` (port chosen by
the OS unless given), or RTU between two pseudo-terminals linked by ``socat``.
"""

import asyncio
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.errors import DeviceError
from drivers.temperature import TemperatureProbeSettings, encode_temperature
from sim.sensor import Climate

START_TIMEOUT_S = 5.0
BROKEN_WIRE_C = -200.0
"""What the twin's transmitter reads on an open probe (-2000 counts of 0.1 °C)."""
FUNCTION_CODE = {"holding": 3, "input": 4}


class TemperatureTwin:
    """A temperature transmitter served by pymodbus (TCP or RTU), configured as the
    driver's ``settings`` (register, table, encoding, scale, offset, unit id; the URL
    in them is not used: the twin's own is :attr:`url`).

    The server runs on an asyncio loop in a thread of its own, kept across :meth:`stop`
    and :meth:`start`; :meth:`close` ends everything.
    """

    def __init__(self, settings: TemperatureProbeSettings, *,
                 transport: Literal["tcp", "rtu"] = "tcp", port: int = 0, baud: int = 115200,
                 climate: Climate | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.transport = transport
        self.port = port
        self.baud = baud
        self.climate = climate if climate is not None else Climate()
        self.clock = clock
        self.requests = 0
        self._value_c: float | None = None
        self._broken = False
        self._silent = False
        self._lock = threading.Lock()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="temperature-twin-loop", daemon=True)
        self._thread.start()
        self._pty_dir: Path | None = None
        self._socat: subprocess.Popen | None = None

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

    # ------------------------------------------------------------------ the server

    @property
    def url(self) -> str:
        """Where the driver finds this twin."""
        if self.transport == "tcp":
            return f"tcp://127.0.0.1:{self.port}"
        return f"rtu://{self._pty_path('client')}?baud={self.baud}"

    def start(self) -> str:
        """Serve (again); returns :attr:`url`."""
        if self._server is not None:
            return self.url
        if self.transport == "rtu" and self._socat is None:
            self._start_socat()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        try:
            self._server = future.result(START_TIMEOUT_S)
        except (RuntimeError, OSError) as exc:
            raise DeviceError(f"temperature twin cannot listen at {self.url}: {exc}"
                              ) from None
        if self.transport == "tcp":
            self.port = self._server.transport.sockets[0].getsockname()[1]
        return self.url

    async def _serve(self) -> ModbusTcpServer | ModbusSerialServer:
        """Create the server inside the loop (pymodbus asks for a running loop)."""
        device = SimDevice(self.settings.unit_id, simdata=SimData(
            0, count=self.settings.address + 2, datatype=DataType.REGISTERS),
            action=self.serve)
        server: ModbusTcpServer | ModbusSerialServer
        if self.transport == "tcp":
            server = ModbusTcpServer(device, address=("127.0.0.1", self.port),
                                     ignore_missing_devices=True)
        else:
            server = ModbusSerialServer(device, port=str(self._pty_path("server")),
                                        baudrate=self.baud, ignore_missing_devices=True)
        await server.serve_forever(background=True)
        return server

    def stop(self) -> None:
        """Take the server away (clients see the connection close)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        asyncio.run_coroutine_threadsafe(server.shutdown(), self._loop).result(
            START_TIMEOUT_S)

    def close(self) -> None:
        """Stop the server, its loop and the pseudo-terminals."""
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT_S)
        self._loop.close()
        if self._socat is not None:
            self._socat.terminate()
            try:
                self._socat.wait(2.0)
            except subprocess.TimeoutExpired:
                self._socat.kill()
                self._socat.wait(2.0)
            self._socat = None
        if self._pty_dir is not None:
            shutil.rmtree(self._pty_dir, ignore_errors=True)
            self._pty_dir = None

    def __enter__(self) -> "TemperatureTwin":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ pty pair

    def _pty_path(self, end: Literal["server", "client"]) -> Path:
        if self._pty_dir is None:
            self._pty_dir = Path(tempfile.mkdtemp(prefix="zhichao-temperature-"))
        return self._pty_dir / end

    def _start_socat(self) -> None:
        """Two pseudo-terminals linked by socat: one for the server, one for the driver
        (pymodbus opens both by path, so one ``os.openpty()`` pair does not do)."""
        socat = shutil.which("socat")
        if socat is None:
            raise DeviceError("the RTU temperature twin needs socat (apt-get install "
                              "socat; `make system` does it) (got none on PATH)")
        server, client = self._pty_path("server"), self._pty_path("client")
        log = server.with_name("socat.log")
        with log.open("wb") as err:
            self._socat = subprocess.Popen(
                [socat, f"pty,raw,echo=0,link={server}", f"pty,raw,echo=0,link={client}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (server.exists() and client.exists()):
            if self._socat.poll() is not None or time.monotonic() > deadline:
                message = log.read_text(errors="replace").strip()
                raise DeviceError(f"socat did not make the pty pair in {self._pty_dir} "
                                  f"(got: {message or 'no message'})")
            time.sleep(0.01)
