"""The center's receiver: a ZeroMQ ROUTER behind CURVE, feeding the ingestor in batches.

Only enrolled devices get through the handshake: a ZAP handler (pyzmq's
``ThreadAuthenticator``) checks each client's CURVE public key against the ``devices``
table, reloading it when a key is not known yet, so a device enrolled while the receiver
runs connects without a restart. The ZAP domain is the settings' ``zap_domain``; the
edges set the same.

The loop gathers up to ``batch_max`` packet messages, or what came within
``batch_wait_ms`` of the first, and verifies them (which starts writing their images); a
second thread stores each verified batch (:meth:`~center.ingest.Ingestor.store` commits
before it returns) while the next is received and verified; only then does the loop send
the acks, one message per connection, device and status. Pings are answered at once.
Nothing a client sends stops the loop: a bad message is refused and logged, a failing
store is logged and not acknowledged (the edges resend), and a stop event ends it within a
poll interval. After each commit the loop sets the ``stored`` event it was given, so the
cases thread of the same process (:func:`center.service.run_center`) looks at once instead
of at its next interval.
"""

import contextlib
import logging
import queue
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.auth
from sqlalchemy import Engine, insert
from zmq.auth.thread import ThreadAuthenticator

from center.db import make_engine, upgrade
from center.device_keys import keys_generation
from center.ingest import (
    Checked,
    Incoming,
    Ingestor,
    Outcome,
    StoreError,
    enrolled_curve_keys,
)
from center.ingest_models import Refusal
from center.settings import CenterSettings, ReceiverSettings
from evidence.wire import PACKET, PING, Ack, ack_frames, kind, tcp_keepalive
from overload.errors import RuleError
from overload.plates import load_plate_grammar
from zhichao.errors import ConfigError

if TYPE_CHECKING:  # prometheus_client only when the metrics are served
    from center.metrics import CenterMetrics

log = logging.getLogger("zhichao.center.receiver")

POLL_MS = 100
RELOAD_MIN_S = 1.0
"""A handshake reloads an allow-list this old even if no key changed (a rotation's
overlap ends by the clock); a change of keys reloads it at once."""
REFUSAL_LOG_S = 60.0
"""A refused CURVE key is written to ``refusals`` at most this often."""


def router_socket(ctx: zmq.Context, r: ReceiverSettings, public_key: bytes,
                  secret_key: bytes) -> zmq.Socket:
    """The receiver's ROUTER, not bound yet: CURVE server in the ZAP domain, TCP keepalive
    (ZMTP heartbeats are off: :func:`evidence.wire.tcp_keepalive` says why), and a receive
    queue of a few batches per connection."""
    sock = ctx.socket(zmq.ROUTER)
    sock.curve_server = True
    sock.curve_publickey, sock.curve_secretkey = public_key, secret_key
    sock.zap_domain = r.zap_domain.encode("utf-8")
    tcp_keepalive(sock, r.heartbeat_s)
    sock.setsockopt(zmq.RCVHWM, max(1000, 4 * r.batch_max))
    sock.linger = 1000
    return sock


class AllowList:
    """The ZAP credentials provider: accepted CURVE keys, reloaded when they changed and
    when older than RELOAD_MIN_S."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.keys: set[str] = set()
        self._loaded_at = float("-inf")
        self._generation: tuple | None = None
        self._refused_at: dict[str, float] = {}
        self.refused = 0

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by the authenticator thread for each CURVE handshake, against a list
        reloaded first when a key was enrolled, rotated or revoked since (one small
        query a handshake, and handshakes are rare: one a connection) or when older than
        RELOAD_MIN_S (a rotation's overlap ends by the clock alone): a revoked key loses
        its next handshake."""
        text = key.decode("ascii")
        now = time.monotonic()
        self._refresh(now)
        if text in self.keys:
            return True
        self.refused += 1
        if now - self._refused_at.get(text, float("-inf")) >= REFUSAL_LOG_S:
            self._refused_at[text] = now
            log.warning("refused a connection in ZAP domain %s: CURVE key %s is not "
                        "enrolled, or revoked, or past its rotation's overlap", domain, text)
            self._record(text)
        return False

    def _refresh(self, now: float) -> None:
        """Reload the keys if they changed or the list is RELOAD_MIN_S old."""
        try:
            with self.engine.connect() as conn:
                generation = keys_generation(conn)
            if generation == self._generation and now - self._loaded_at < RELOAD_MIN_S:
                return
            self.keys = enrolled_curve_keys(self.engine)
            self._generation, self._loaded_at = generation, now
        except Exception:
            log.exception("cannot load the enrolled devices' keys")

    def _record(self, key: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(Refusal).values(
                    at=datetime.now(UTC), peer=key, reason="unknown_key",
                    detail="CURVE handshake with a key no enrolled device has"))
        except Exception:
            log.exception("cannot record a refusal")


def server_keys(path: Path) -> tuple[bytes, bytes]:
    """The center's CURVE key pair from its secret key file."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"receiver.server_secret_key {path}: {exc}") from None
    if secret is None:
        raise ConfigError(f"receiver.server_secret_key {path}: holds no secret key (the "
                          ".key_secret file of zhichao keys new is needed)")
    return public, secret


class Receiver:
    """One receiver: bind, authenticate, gather, ingest, acknowledge."""

    def __init__(self, settings: CenterSettings, engine: Engine | None = None, *,
                 stored: threading.Event | None = None,
                 metrics: "CenterMetrics | None" = None) -> None:
        self.settings = settings
        self.metrics = metrics
        """Counts each acknowledged packet for Prometheus (``metrics_address``)."""
        self.stored = stored
        """Set after each committed batch: wakes whoever turns stored packets into cases."""
        self.engine = engine or make_engine(settings.database)
        self.public_key, self.secret_key = server_keys(settings.receiver.server_secret_key)
        try:
            plates = load_plate_grammar(settings.law.rules_folder)
        except RuleError as exc:
            raise ConfigError(f"law.rules_folder: {exc}") from None
        self.ingestor = Ingestor(self.engine, settings.images_dir, limits=settings.receiver,
                                 plates=plates)
        self.allow = AllowList(self.engine)
        if metrics is not None:
            metrics.handshakes.receivers.append(self)
        self.ready = threading.Event()
        self.counts: dict[str, int] = defaultdict(int)
        self.busy_s: dict[str, float] = defaultdict(float)
        """Seconds spent verifying and storing: which stage limits the receiver."""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ctx: zmq.Context | None = None
        self.error: ConfigError | None = None

    def start(self) -> None:
        """Run in a thread of its own (tests, the demo); :meth:`stop` ends it."""
        self._thread = threading.Thread(target=self._run_quietly, name="receiver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self.ready.wait(0.05):
            if self.error is not None or not self._thread.is_alive():
                raise self.error or ConfigError("receiver stopped while starting")
            if time.monotonic() > deadline:
                raise ConfigError("receiver did not start within 10 s")

    def _run_quietly(self) -> None:
        """:meth:`run` in the thread: a start-up error is kept for :meth:`start`."""
        try:
            self.run(self._stop)
        except ConfigError as exc:
            self.error = exc

    def stop(self, timeout_s: float = 45.0) -> None:
        """End the thread started by :meth:`start`: it finishes the batch being stored
        (up to 30 s) and closes its sockets before this returns."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set."""
        r = self.settings.receiver
        ctx = self._ctx = zmq.Context()
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("zhichao.center.zap"))
        auth.start()
        auth.configure_curve_callback(r.zap_domain, credentials_provider=self.allow)
        sock = router_socket(ctx, r, self.public_key, self.secret_key)
        try:
            for endpoint in r.listen:
                try:
                    sock.bind(endpoint)
                except zmq.ZMQError as exc:
                    self.error = ConfigError(f"receiver.listen {endpoint}: cannot bind: {exc}")
                    raise self.error from None
            log.info("receiver listening on %s", ", ".join(r.listen))
            self.ready.set()
            self._loop(sock, stop)
        finally:
            sock.close()
            auth.stop()
            ctx.term()
            self.ingestor.close()
            self.ingestor.refusal_log.flush(final=True)

    def _loop(self, sock: zmq.Socket, stop: threading.Event) -> None:
        """Receive and verify here; store in a second thread, one batch behind, so the
        disk and the CPU work at once; send the acks here when the store is done."""
        r = self.settings.receiver
        assert self._ctx is not None
        wake_rx, wake_tx = self._ctx.socket(zmq.PAIR), self._ctx.socket(zmq.PAIR)
        address = f"inproc://stored-{id(self)}"
        wake_rx.bind(address)
        wake_tx.connect(address)
        todo: queue.Queue = queue.Queue(maxsize=1)
        results: queue.Queue = queue.Queue()
        worker = threading.Thread(target=self._store_worker, args=(todo, results, wake_tx),
                                  name="receiver-store", daemon=True)
        worker.start()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake_rx, zmq.POLLIN)
        try:
            while not stop.is_set():
                events = dict(poller.poll(POLL_MS))
                self.ingestor.refusal_log.flush()
                if wake_rx in events:
                    self._send_results(sock, wake_rx, results)
                if sock not in events:
                    continue
                batch = self._gather(sock, r.batch_max, r.batch_wait_ms / 1000)
                if batch:
                    t = time.perf_counter()
                    checked = self._verify(batch)
                    self.busy_s["verify"] += time.perf_counter() - t
                    while checked is not None and not stop.is_set():
                        try:
                            todo.put(checked, timeout=POLL_MS / 1000)
                            checked = None
                        except queue.Full:
                            self._send_results(sock, wake_rx, results)
                    if checked is not None:  # stopping: never stored, never acknowledged
                        self.ingestor.abandon(checked[1])
        finally:
            todo.put(None)
            worker.join(30)
            self._send_results(sock, wake_rx, results)
            wake_rx.close()
            wake_tx.close()

    def _gather(self, sock: zmq.Socket, batch_max: int, wait_s: float
                ) -> list[tuple[bytes, Incoming]]:
        """Up to ``batch_max`` packet messages, or what came within ``wait_s``."""
        batch: list[tuple[bytes, Incoming]] = []
        deadline = time.monotonic() + wait_s
        while len(batch) < batch_max:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                left = deadline - time.monotonic()
                if left <= 0 or not sock.poll(int(left * 1000) + 1):
                    break
                continue
            self._take(sock, frames, batch)
        return batch

    def _take(self, sock: zmq.Socket, frames: list[zmq.Frame],
              batch: list[tuple[bytes, Incoming]]) -> None:
        """Answer a ping, queue a packet, log anything else."""
        identity, body = frames[0].bytes, frames[1:]
        what = kind([f.buffer for f in body[:1]])
        if what == PING:
            sock.send_multipart([identity, PING])
            self.counts["pings"] += 1
        elif what == PACKET:
            try:
                peer = body[-1].get("User-Id")
            except zmq.ZMQError:
                peer = ""
            # views of the received frames, not copies: the images are only hashed and
            # written (the views keep their frames alive)
            batch.append((identity, Incoming([f.buffer for f in body], peer)))
        else:
            self.counts["unknown_messages"] += 1
            log.warning("ignored a message of unknown kind %r (%d frames)", what, len(body))

    def _verify(self, batch: list[tuple[bytes, Incoming]]
                ) -> tuple[list[bytes], Checked] | None:
        """The batch checked, with its connections; None (logged) if that failed."""
        try:
            return [identity for identity, _ in batch], self.ingestor.verify(
                [m for _, m in batch])
        except Exception:
            self.counts["store_errors"] += 1
            log.exception("batch of %d packets not verified, not acknowledged", len(batch))
            return None

    def _store_worker(self, todo: queue.Queue, results: queue.Queue, wake: zmq.Socket
                      ) -> None:
        """Store batches until the None; each stored batch's outcomes go to ``results``.
        A failed store acknowledges nothing (the edges resend)."""
        while (item := todo.get()) is not None:
            identities, checked = item
            try:
                t = time.perf_counter()
                results.put((identities, self.ingestor.store(checked)))
                self.busy_s["store"] += time.perf_counter() - t
            except StoreError as exc:
                self.counts["store_errors"] += 1
                log.error("batch of %d packets not stored, not acknowledged: %s",
                          len(identities), exc)
                time.sleep(0.5)
                continue
            except Exception:
                self.counts["store_errors"] += 1
                log.exception("batch of %d packets not stored, not acknowledged",
                              len(identities))
                time.sleep(0.5)
                continue
            if self.stored is not None:
                self.stored.set()
            with contextlib.suppress(zmq.Again):  # a wake-up is waiting already
                wake.send(b"", zmq.NOBLOCK)

    def _send_results(self, sock: zmq.Socket, wake: zmq.Socket, results: queue.Queue) -> None:
        """Send the acks of every batch stored so far."""
        while True:
            try:
                wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        while True:
            try:
                identities, outcomes = results.get_nowait()
            except queue.Empty:
                return
            self._ack(sock, identities, outcomes)

    def _ack(self, sock: zmq.Socket, identities: list[bytes], outcomes: list[Outcome]) -> None:
        """One ack message per connection, device, status and reason."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for identity, o in zip(identities, outcomes, strict=True):
            self.counts["duplicates" if o.duplicate else o.status] += 1
            if self.metrics is not None:
                self.metrics.outcome(o)
            if o.device_id is None or o.sequence is None:
                continue  # malformed beyond naming: nothing the edge could match
            reason = f"{o.reason}: {o.detail}" if o.status == "refused" else ""
            groups[identity, o.status, o.device_id, reason].append(o.sequence)
        for (identity, status, device_id, reason), seqs in groups.items():
            frames = ack_frames(Ack(status, device_id, tuple(seqs), reason))
            try:
                sock.send_multipart([identity, *frames], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.warning("ack to %s not sent (%s): it will resend", device_id, exc)


def run_receiver(settings: CenterSettings, stop_event: threading.Event,
                 stored: threading.Event | None = None,
                 metrics: "CenterMetrics | None" = None) -> None:
    """Bring the database to the latest migration, then receive until ``stop_event`` is
    set (``zhichao center run``), setting ``stored`` after each committed batch.
    ConfigError if the server key file is missing or bad."""
    engine = make_engine(settings.database)
    upgrade(engine)
    Receiver(settings, engine, stored=stored, metrics=metrics).run(stop_event)
