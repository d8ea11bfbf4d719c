"""A pymodbus server for a twin: TCP on 127.0.0.1, or RTU between two pseudo-terminals.

The Modbus twins (:mod:`sim.modbus_twin`, a WIM controller; :mod:`sim.temperature_twin`,
a temperature transmitter) differ only in the registers they serve; how they are served
is here. The server runs on an asyncio loop in a thread of its own, kept across
:meth:`ModbusServerTwin.stop` and :meth:`~ModbusServerTwin.start` (a device that goes
away and comes back on the same port or path); :meth:`~ModbusServerTwin.close` ends
everything. For RTU, ``socat`` links two pseudo-terminals: pymodbus opens both ends by
path, so one ``os.openpty()`` pair does not do.
"""

import asyncio
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Literal, Self

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimDevice

from drivers.errors import DeviceError

START_TIMEOUT_S = 5.0


class ModbusServerTwin:
    """The serving part of a Modbus twin; a subclass gives :meth:`device`.

    ``what`` names the twin in errors; ``ignore_missing_devices`` lets a request to
    another unit id (or one the twin refuses to answer) go unanswered, as on a real bus.
    """

    what = "Modbus twin"
    ignore_missing_devices = False

    def __init__(self, *, transport: Literal["tcp", "rtu"] = "tcp", port: int = 0,
                 baud: int = 115200) -> None:
        self.transport = transport
        self.port = port
        self.baud = baud
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"{self.what.replace(' ', '-')}-loop",
                                        daemon=True)
        self._thread.start()
        self._pty_dir: Path | None = None
        self._socat: subprocess.Popen | None = None

    def device(self) -> SimDevice:
        """The registers served, with the hook that answers each request."""
        raise NotImplementedError

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
            raise DeviceError(f"{self.what} cannot listen at {self.url}: {exc}") from None
        if self.transport == "tcp":
            self.port = self._server.transport.sockets[0].getsockname()[1]
        return self.url

    async def _serve(self) -> ModbusTcpServer | ModbusSerialServer:
        """Create the server inside the loop (pymodbus asks for a running loop)."""
        server: ModbusTcpServer | ModbusSerialServer
        if self.transport == "tcp":
            server = ModbusTcpServer(self.device(), address=("127.0.0.1", self.port),
                                     ignore_missing_devices=self.ignore_missing_devices)
        else:
            server = ModbusSerialServer(self.device(), port=str(self._pty_path("server")),
                                        baudrate=self.baud,
                                        ignore_missing_devices=self.ignore_missing_devices)
        await server.serve_forever(background=True)
        return server

    def stop(self) -> None:
        """Take the server away (clients see the connection close); keep the registers."""
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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _pty_path(self, end: Literal["server", "client"]) -> Path:
        if self._pty_dir is None:
            self._pty_dir = Path(tempfile.mkdtemp(prefix="zhichao-modbus-"))
        return self._pty_dir / end

    def _start_socat(self) -> None:
        """Two pseudo-terminals linked by socat, one for the server, one for the driver."""
        socat = shutil.which("socat")
        if socat is None:
            raise DeviceError(f"the RTU {self.what} needs socat (apt-get install socat; "
                              "`make system` does it) (got none on PATH)")
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
