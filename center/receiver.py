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
the acks, one message per connection, device and status. Pings are answered at once,
with the digest of the rule tables the center grades with (the edge doctor compares it).

During a rotation of the center's own CURVE key (``receiver.rotation``) a second ROUTER,
with the new key, is bound on the rotation's addresses; the loop polls both, and acks go
back on the socket their packets came from. At the end of ``old_key_until`` (China time,
by the clock) the old key's socket is closed: its units' connections drop, new ones are
refused, and a unit that lists the new key's endpoint after the old fails over to it.
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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.auth
from sqlalchemy import Engine, insert
from zmq.auth.thread import ThreadAuthenticator

from center.cases import law_rules
from center.db import make_engine, upgrade
from center.device_keys import end_of_day, keys_generation
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
from evidence.wire import PACKET, PING, Ack, ack_frames, kind, pong_frames, tcp_keepalive
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
Peer = tuple[zmq.Socket, bytes]
"""A connection: the ROUTER it came on and its routing identity there."""


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


def server_keys(path: Path, option: str = "receiver.server_secret_key"
                ) -> tuple[bytes, bytes]:
    """The center's CURVE key pair from its secret key file (``option`` names it)."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{option} {path}: {exc}") from None
    if secret is None:
        raise ConfigError(f"{option} {path}: holds no secret key (the .key_secret file of "
                          "zhichao keys new is needed)")
    return public, secret


@dataclass(frozen=True)
class Listener:
    """One CURVE key pair and the endpoints it is served on; ``until``: the moment its
    socket closes (None: never)."""

    option: str
    endpoints: tuple[str, ...]
    keys: tuple[bytes, bytes]
    until: datetime | None = None


def listeners(r: ReceiverSettings) -> list[Listener]:
    """The key pairs to serve: the settings' key, and during a rotation the new one too
    (the old key's until the end of ``old_key_until``)."""
    current = Listener("receiver.server_secret_key", tuple(r.listen),
                       server_keys(r.server_secret_key))
    if r.rotation is None:
        return [current]
    new = Listener("receiver.rotation.server_secret_key", tuple(r.rotation.listen),
                   server_keys(r.rotation.server_secret_key,
                               "receiver.rotation.server_secret_key"))
    return [Listener(current.option, current.endpoints, current.keys,
                     end_of_day(r.rotation.old_key_until)), new]


def utc_now() -> datetime:
    """The clock an old key's end is judged by."""
    return datetime.now(UTC)


class Receiver:
    """One receiver: bind, authenticate, gather, ingest, acknowledge."""

    def __init__(self, settings: CenterSettings, engine: Engine | None = None, *,
                 stored: threading.Event | None = None,
                 metrics: "CenterMetrics | None" = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        """The time an old key's end is judged by (a test moves it)."""
        self.metrics = metrics
        """Counts each acknowledged packet for Prometheus (``metrics_address``)."""
        self.stored = stored
        """Set after each committed batch: wakes whoever turns stored packets into cases."""
        self.engine = engine or make_engine(settings.database)
        self.listeners = listeners(settings.receiver)
        self.public_key, self.secret_key = self.listeners[0].keys
        try:
            plates = load_plate_grammar(settings.law.rules_folder)
            self.rules_digest = law_rules(settings.law).digest
        except RuleError as exc:
            raise ConfigError(f"law.rules_folder: {exc}") from None
        self.pong = pong_frames(self.rules_digest)
        """The answer to a ping: the rule tables' digest with it."""
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
        socks: dict[zmq.Socket, Listener] = {}
        try:
            for listener in self.listeners:
                if listener.until is not None and self.clock() >= listener.until:
                    log.warning("%s not served: its rotation's overlap ended %s",
                                listener.option, f"{listener.until:%Y-%m-%d %H:%M} UTC")
                    continue
                sock = router_socket(ctx, r, *listener.keys)
                socks[sock] = listener
                self._bind(sock, listener)
            self.ready.set()
            self._loop(socks, stop)
        finally:
            for sock in socks:
                if not sock.closed:
                    sock.close()
            auth.stop()
            ctx.term()
            self.ingestor.close()
            self.ingestor.refusal_log.flush(final=True)

    def _bind(self, sock: zmq.Socket, listener: Listener) -> None:
        """Bind a key's socket on its endpoints; ConfigError naming the one that failed."""
        option = ("receiver.listen" if listener.option == "receiver.server_secret_key"
                  else "receiver.rotation.listen")
        for endpoint in listener.endpoints:
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                self.error = ConfigError(f"{option} {endpoint}: cannot bind: {exc}")
                raise self.error from None
        until = f" until {listener.until:%Y-%m-%d %H:%M} UTC" if listener.until else ""
        log.info("receiver listening on %s with the key of %s%s",
                 ", ".join(listener.endpoints), listener.option, until)

    def _expire(self, socks: dict[zmq.Socket, Listener], poller: zmq.Poller) -> None:
        """Close the socket of a key whose overlap has ended by the clock: its units'
        connections drop and new ones are refused."""
        now = None
        for sock, listener in list(socks.items()):
            if listener.until is None or sock.closed:
                continue
            now = now or self.clock()
            if now >= listener.until:
                poller.unregister(sock)
                sock.close(linger=0)
                log.warning("closed %s (the key of %s): its rotation's overlap ended",
                            ", ".join(listener.endpoints), listener.option)

    def _loop(self, socks: dict[zmq.Socket, Listener], stop: threading.Event) -> None:
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
        for sock in socks:
            poller.register(sock, zmq.POLLIN)
        poller.register(wake_rx, zmq.POLLIN)
        expiring = any(listener.until is not None for listener in socks.values())
        try:
            while not stop.is_set():
                if expiring:
                    self._expire(socks, poller)
                events = dict(poller.poll(POLL_MS))
                self.ingestor.refusal_log.flush()
                if wake_rx in events:
                    self._send_results(wake_rx, results)
                ready = [s for s in socks if s in events]
                if not ready:
                    continue
                batch = self._gather(ready, r.batch_max, r.batch_wait_ms / 1000)
                if batch:
                    t = time.perf_counter()
                    checked = self._verify(batch)
                    self.busy_s["verify"] += time.perf_counter() - t
                    while checked is not None and not stop.is_set():
                        try:
                            todo.put(checked, timeout=POLL_MS / 1000)
                            checked = None
                        except queue.Full:
                            self._send_results(wake_rx, results)
                    if checked is not None:  # stopping: never stored, never acknowledged
                        self.ingestor.abandon(checked[1])
        finally:
            todo.put(None)
            worker.join(30)
            self._send_results(wake_rx, results)
            wake_rx.close()
            wake_tx.close()

    def _gather(self, socks: list[zmq.Socket], batch_max: int, wait_s: float
                ) -> list[tuple[Peer, Incoming]]:
        """Up to ``batch_max`` packet messages from ``socks``, a message from each in
        turn, or what came within ``wait_s``."""
        batch: list[tuple[Peer, Incoming]] = []
        deadline = time.monotonic() + wait_s
        poller = None
        while len(batch) < batch_max:
            came = False
            for sock in socks:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    continue
                came = True
                self._take(sock, frames, batch)
            if came:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if len(socks) == 1:
                if not socks[0].poll(int(left * 1000) + 1):
                    break
                continue
            if poller is None:
                poller = zmq.Poller()
                for sock in socks:
                    poller.register(sock, zmq.POLLIN)
            if not poller.poll(int(left * 1000) + 1):
                break
        return batch

    def _take(self, sock: zmq.Socket, frames: list[zmq.Frame],
              batch: list[tuple[Peer, Incoming]]) -> None:
        """Answer a ping (with the rule tables' digest), queue a packet with the socket it
        came on, log anything else."""
        identity, body = frames[0].bytes, frames[1:]
        what = kind([f.buffer for f in body[:1]])
        if what == PING:
            sock.send_multipart([identity, *self.pong])
            self.counts["pings"] += 1
        elif what == PACKET:
            try:
                peer = body[-1].get("User-Id")
            except zmq.ZMQError:
                peer = ""
            # views of the received frames, not copies: the images are only hashed and
            # written (the views keep their frames alive)
            batch.append(((sock, identity), Incoming([f.buffer for f in body], peer)))
        else:
            self.counts["unknown_messages"] += 1
            log.warning("ignored a message of unknown kind %r (%d frames)", what, len(body))

    def _verify(self, batch: list[tuple[Peer, Incoming]]
                ) -> tuple[list[Peer], Checked] | None:
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

    def _send_results(self, wake: zmq.Socket, results: queue.Queue) -> None:
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
            self._ack(identities, outcomes)

    def _ack(self, peers: list[Peer], outcomes: list[Outcome]) -> None:
        """One ack message per connection, device, status and reason, on the socket the
        packets came from; none on a socket closed meanwhile (an old key's: the unit
        resends to the new one, which finds them stored)."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for identity, o in zip(peers, outcomes, strict=True):
            self.counts["duplicates" if o.duplicate else o.status] += 1
            if self.metrics is not None:
                self.metrics.outcome(o)
            if o.device_id is None or o.sequence is None:
                continue  # malformed beyond naming: nothing the edge could match
            reason = f"{o.reason}: {o.detail}" if o.status == "refused" else ""
            groups[identity, o.status, o.device_id, reason].append(o.sequence)
        for ((sock, identity), status, device_id, reason), seqs in groups.items():
            if sock.closed:
                continue
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
