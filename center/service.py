"""The center as one running service: receiver and case processing side by side.

``zhichao center run`` and the demo both call :func:`run_center`; the command line only
parses its arguments and prints.
"""

import gc
import logging
import signal
import threading
import time

from sqlalchemy import Engine

from center.cases import law_rules, process_forever
from center.db import make_engine, upgrade
from center.settings import CenterSettings
from zhichao.errors import ConfigError


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


def run_center(settings: CenterSettings, *, seconds: float | None = None,
               receive: bool = True, stop: threading.Event | None = None) -> None:
    """Receive packets and turn them into captures and cases until ``stop`` is set,
    SIGTERM arrives or ``seconds`` pass. The receiver wakes the cases thread after each
    batch it commits; without it (``receive=False``: another process receives) the cases
    thread looks every ``law.process_interval_s``. An error of the receiver stops the
    cases thread too and is raised here."""
    rules = law_rules(settings.law)
    rules.benchmark(settings.law.benchmark)
    rules.tolerance_policy(settings.law.tolerance)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = open_db(settings)
    stop = stop or threading.Event()
    stored = threading.Event() if receive else None
    threads = [threading.Thread(target=process_forever, args=(engine, settings, stop),
                                kwargs={"stored": stored}, name="cases", daemon=True)]
    errors: list[BaseException] = []
    if receive:
        from center.receiver import run_receiver  # noqa: PLC0415 (zmq only when receiving)

        def receiver() -> None:
            try:
                run_receiver(settings, stop, stored)
            except BaseException as exc:  # reported below, after the others stop
                errors.append(exc)
                stop.set()

        threads.append(threading.Thread(target=receiver, name="receiver", daemon=True))
    settle_heap()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for t in threads:
        t.start()
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.2)
    finally:
        stop.set()
        if stored is not None:
            stored.set()  # the cases thread sees the stop at once
        for t in threads:
            t.join(timeout=10)
        engine.dispose()
        gc.unfreeze()  # run in-process (tests, an embedding program): leave the heap as found
    if errors:
        raise errors[0]
