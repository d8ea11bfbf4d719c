"""Serving the web app: uvicorn in this process, until stopped."""

import logging
import signal
import threading
import time
from collections.abc import Callable

import uvicorn

from center.service import open_db
from center.settings import CenterSettings
from center.web.app import create_app
from zhichao.errors import ZhichaoError

log = logging.getLogger("zhichao.center.web")


def make_server(settings: CenterSettings, host: str | None = None,
                port: int | None = None) -> uvicorn.Server:
    """A uvicorn server of the center's pages on its migrated database (HTTPS when the
    settings name a certificate)."""
    web = settings.web
    app = create_app(settings, open_db(settings))
    config = uvicorn.Config(app, host=host or web.host, port=web.port if port is None else port,
                            log_level="warning", access_log=False, proxy_headers=False,
                            ssl_certfile=str(web.tls_cert) if web.tls_cert else None,
                            ssl_keyfile=str(web.tls_key) if web.tls_key else None)
    return uvicorn.Server(config)


READY_CHECK_S = 0.05
"""How often :func:`serve` looks whether uvicorn has started listening."""


def serve(settings: CenterSettings, host: str | None = None, port: int | None = None,
          stop: threading.Event | None = None, ready: threading.Event | None = None
          ) -> None:
    """Serve until interrupted, or until ``stop`` is set; ``ready`` is set once the
    socket listens (a page asked for before then is refused)."""
    server = make_server(settings, host, port)
    if stop is not None:
        def watch() -> None:
            stop.wait()
            server.should_exit = True
        threading.Thread(target=watch, name="web-stop", daemon=True).start()
    if ready is not None:
        def started() -> None:
            while not server.started and not server.should_exit:
                time.sleep(READY_CHECK_S)
            if server.started:
                ready.set()
        threading.Thread(target=started, name="web-ready", daemon=True).start()
    server.run()


class ServeError(ZhichaoError):
    """The pages could not be served (a port in use, a certificate that does not load)."""


def serve_in_foreground(settings: CenterSettings, host: str | None = None,
                        port: int | None = None,
                        on_ready: Callable[[], None] | None = None) -> None:
    """Serve until Ctrl-C or SIGTERM; ``on_ready`` is called once the pages can be asked
    for (say where they are only then). The server runs in a thread and this one waits:
    uvicorn in the main thread re-raises the signal inside its event loop and prints a
    traceback for a normal stop."""
    stop, ready = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            serve(settings, host, port, stop=stop, ready=ready)
        except BaseException as exc:  # uvicorn exits on a port in use: raised below
            failed.append(exc)
        stop.set()

    server = threading.Thread(target=run, name="web", daemon=True)
    server.start()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.05 if on_ready is not None else 0.5):
            if on_ready is not None and ready.is_set():
                on_ready()
                on_ready = None
    except KeyboardInterrupt:
        stop.set()
    finally:
        signal.signal(signal.SIGTERM, previous)
    server.join(timeout=10)
    if failed:
        raise ServeError(f"the pages could not be served on {address(settings, host, port)}"
                         f": {failed[0]!r}")


def address(settings: CenterSettings, host: str | None = None, port: int | None = None) -> str:
    """The pages' address as a browser opens it."""
    scheme = "https" if settings.web.tls_cert else "http"
    shown = host or settings.web.host
    shown = "127.0.0.1" if shown in ("0.0.0.0", "") else shown
    return f"{scheme}://{shown}:{settings.web.port if port is None else port}"
