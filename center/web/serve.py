"""Serving the web app: uvicorn in this process, until stopped."""

import logging
import threading

import uvicorn

from center.service import open_db
from center.settings import CenterSettings
from center.web.app import create_app

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


def serve(settings: CenterSettings, host: str | None = None, port: int | None = None,
          stop: threading.Event | None = None) -> None:
    """Serve until interrupted, or until ``stop`` is set."""
    server = make_server(settings, host, port)
    if stop is not None:
        def watch() -> None:
            stop.wait()
            server.should_exit = True
        threading.Thread(target=watch, name="web-stop", daemon=True).start()
    server.run()


def address(settings: CenterSettings, host: str | None = None, port: int | None = None) -> str:
    """The pages' address as a browser opens it."""
    scheme = "https" if settings.web.tls_cert else "http"
    shown = host or settings.web.host
    shown = "127.0.0.1" if shown in ("0.0.0.0", "") else shown
    return f"{scheme}://{shown}:{settings.web.port if port is None else port}"
