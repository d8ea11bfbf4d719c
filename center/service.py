"""The center as one running service: receiver and case processing side by side.

``zhichao center run`` and the demo both call :func:`run_center`; the command line only
parses its arguments and prints. A thread that dies stops the whole center, never half
of it: a receiver acknowledging packets that no cases thread turns into cases, or a cases
thread waiting for a receiver that is gone.

On PostgreSQL the two halves may also run as processes of their own, any number of each
on one database and one image store (``run_center(receive=False)`` or
``run_center(process=False)``; ``center run --process-only`` / ``--receive-only``):
receivers only store and acknowledge, processors claim stored packets with row locks
(:func:`center.cases.process_pending`), so that none is processed twice.
"""

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from center.cases import law_rules, process_forever
from center.db import make_engine, upgrade
from center.settings import CenterSettings
from zhichao.errors import ConfigError, ZhichaoError
from zhichao.systemd import Notifier

if TYPE_CHECKING:
    from center.metrics import CenterMetrics

log = logging.getLogger(__name__)


class CenterStoppedError(ZhichaoError):
    """A thread of the running center died, and the center stopped: which one, and why."""


def open_db(settings: CenterSettings) -> Engine:
    """An engine on the center's database, brought to the latest migration."""
    engine = make_engine(settings.database)
    try:
        upgrade(engine)
    except Exception as exc:
        raise ConfigError(f"database {settings.database}: cannot open or migrate: "
                          f"{str(exc).splitlines()[0]}") from None
    return engine


def settle_heap() -> None:
    """Take what start-up made (modules, tables, schemas: about a hundred thousand objects)
    out of the cyclic garbage collector's sight. Left in, every full collection walks all
    of them again, and a receiver makes enough objects per batch to start one every few
    batches: freezing them took a record's CPU at the center from 287 to about 205 µs.
    Call it once the process is set up, before it starts its work; ``gc.unfreeze()``
    undoes it."""
    gc.collect()
    gc.freeze()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _serve_pages(settings: CenterSettings, stop: threading.Event) -> None:
    """The center's web pages in this process until ``stop`` (``web.serve_with_run``):
    one service to start where the pages need no process of their own."""
    from center.web.serve import address, serve  # noqa: PLC0415 (web modules only when served)

    log.info("center pages on %s", address(settings))
    serve(settings, stop=stop)


def _status_line(threads: list[threading.Thread], started: float) -> str:
    """The running center in one line for ``systemctl status``: its threads alive and for
    how long (the counts live in the database, and the main loop must not wait on it)."""
    alive = ", ".join(t.name for t in threads if t.is_alive()) or "no threads"
    up_min = int((time.monotonic() - started) // 60)
    return f"running {alive}; up {up_min // 60} h {up_min % 60:02d} min"


def _metrics(settings: CenterSettings, engine: Engine) -> "CenterMetrics | None":
    """The metrics page when ``metrics_address`` is set (prometheus_client imported only
    then); a port that cannot be bound is a ConfigError naming the setting."""
    if settings.metrics_address is None:
        return None
    from center.metrics import CenterMetrics  # noqa: PLC0415

    try:
        return CenterMetrics(engine, settings.metrics_address)
    except OSError as exc:
        raise ConfigError(f"metrics_address {settings.metrics_address}: cannot serve: "
                          f"{exc}") from None


def run_center(settings: CenterSettings, *, seconds: float | None = None,
               receive: bool = True, process: bool = True,
               stop: threading.Event | None = None) -> None:
    """Receive packets and turn them into captures and cases until ``stop`` is set,
    SIGTERM arrives or ``seconds`` pass; with ``web.serve_with_run``, the web pages are
    served beside them (a third thread, stopped with the others). The receiver wakes the
    cases thread after each batch it commits; without it (``receive=False``: another
    process receives) the cases thread looks every ``law.process_interval_s``. With
    ``process=False`` only the receiver runs: stored packets wait for a processor, a
    process of its own on the same database. ConfigError if both are False (nothing
    would run).

    A thread that dies (or ends while the center should run) stops the other and the
    center: its traceback goes to the log, and :class:`CenterStoppedError` is raised here in one
    line naming the thread and the cause (for an error meant for a person, a ZhichaoError
    such as a missing key file, its message)."""
    if not receive and not process:
        raise ConfigError("center run: neither receiving nor processing was asked "
                          "(--receive-only and --process-only exclude each other)")
    rules = law_rules(settings.law)
    rules.benchmark(settings.law.benchmark)
    rules.tolerance_policy(settings.law.tolerance)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = open_db(settings)
    try:
        metrics = _metrics(settings, engine)
    except ConfigError:
        engine.dispose()
        raise
    stop = stop or threading.Event()
    stored = threading.Event() if receive and process else None
    failures: list[tuple[str, BaseException | None]] = []

    def guarded(name: str, work: Callable[[], None]) -> threading.Thread:
        """A thread doing ``work`` whose end, unless the center is stopping, stops it."""
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported by run_center, after the others stop
                log.error("the %s thread died; stopping the center: %s", name,
                          _first_line(exc), exc_info=not isinstance(exc, ZhichaoError))
                failures.append((name, exc))
            else:
                if not stop.is_set():
                    failures.append((name, None))
            stop.set()
            if stored is not None:
                stored.set()  # the cases thread sees the stop at once
        return threading.Thread(target=run, name=name, daemon=True)

    threads = [guarded("cases", lambda: process_forever(engine, settings, stop,
                                                        stored=stored))] if process else []
    if receive:
        from center.receiver import run_receiver  # noqa: PLC0415 (zmq only when receiving)

        threads.append(guarded("receiver", lambda: run_receiver(settings, stop, stored,
                                                                metrics=metrics)))
    if settings.web.serve_with_run:
        threads.append(guarded("web", lambda: _serve_pages(settings, stop)))
    settle_heap()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    notifier = Notifier()
    for t in threads:
        t.start()
    started = time.monotonic()
    notifier.ready(_status_line(threads, started))
    deadline = None if seconds is None else started + seconds
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            notifier.tick(lambda: _status_line(threads, started))
            stop.wait(0.2)
    finally:
        notifier.stopping("stopping: waiting for the threads to finish")
        stop.set()
        if stored is not None:
            stored.set()  # the cases thread sees the stop at once
        for t in threads:
            t.join(timeout=10)
        if metrics is not None:
            metrics.stop()
        engine.dispose()
        gc.unfreeze()  # run in-process (tests, an embedding program): leave the heap as found
    if failures:
        name, exc = failures[0]
        why = ("ended by itself" if exc is None else f"failed: {exc}"
               if isinstance(exc, ZhichaoError) else f"died: {_first_line(exc)}")
        raise CenterStoppedError(f"the center stopped: its {name} thread {why}") from exc
