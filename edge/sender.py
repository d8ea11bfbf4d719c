"""The sender: a thread that empties the outbox towards the center over ZeroMQ.

It reads only from the outbox, so the weighing loop never waits on the network: when the
center is slow or away, packets simply stay in the outbox (backpressure grows the file,
not a queue in memory) and go later, oldest first.

A DEALER socket with CURVE (the center's public key, the device's own key pair) and the
shared ZAP domain; ``ZMQ_IMMEDIATE`` so nothing queues towards a center that is not
connected; a ping when idle, and TCP keepalive so a dead connection is noticed. At most
``window`` packets (and ``window_mb``) are unacknowledged at a time; one not acknowledged
in time is sent again, the wait doubling up to ``resend_max_s``. The wait follows the acks
(as TCP's retransmission timeout does, RFC 6298): the smoothed time an ack took plus four
times its variation, never below ``ack_timeout_s``. A center that is merely slow (a busy
disk, a long batch, a slow link) is then not sent the same packets again, which would
only add to its load. When nothing has been heard from the center for ``failover_s``
while something was waiting (a packet or a ping), the sender moves to the next endpoint
and sends everything unacknowledged again (the center ignores duplicates). An ``ok`` ack
marks packets acknowledged in the outbox; a ``refused`` one marks them refused with the
center's reason, logged as an error.

Each endpoint may be served with a key of its own (``endpoint_keys``: during a rotation of
the center's key, its new key's endpoint), so a unit lists the new key's endpoint first and
the old one after it, or the other way round, and fails over between them as between any
two centers. A pong's rule-table digest is kept in the status (a center of before the
digest sends none).
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import zmq
import zmq.auth

from edge.outbox import Outbox
from evidence.packet import PacketError
from evidence.signing import KeyFileError, load_signing_key
from evidence.wire import ACK, PING, packet_frames, parse_ack, parse_pong, tcp_keepalive
from zhichao.errors import ConfigError

if TYPE_CHECKING:  # the settings pull in every driver; the sender needs none of them
    from edge.settings import EvidenceSettings

log = logging.getLogger("zhichao.edge.sender")

FILL_CHUNK = 32
"""Packets read from the outbox at a time while filling the window."""


@dataclass(frozen=True)
class SenderOptions:
    """How the sender paces itself (the ``evidence:`` settings without the paths)."""

    zap_domain: str = "zhichao"
    window: int = 1000
    window_mb: float = 64.0
    ack_timeout_s: float = 2.0
    resend_max_s: float = 30.0
    heartbeat_s: float = 5.0
    failover_s: float = 10.0
    prune_every_s: float = 3600.0
    poll_ms: int = 20


def dealer_socket(ctx: zmq.Context, keys: tuple[bytes, bytes, bytes],
                  o: SenderOptions) -> zmq.Socket:
    """The sender's DEALER, not connected yet: CURVE client with ``keys`` (the center's
    public key, the device's public and secret keys) in the ZAP domain, TCP keepalive
    (ZMTP heartbeats are off: :func:`evidence.wire.tcp_keepalive` says why), nothing
    queued while no center is connected, quick reconnects."""
    sock = ctx.socket(zmq.DEALER)
    sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = keys
    sock.zap_domain = o.zap_domain.encode("utf-8")
    sock.immediate = True
    sock.linger = 0
    tcp_keepalive(sock, o.heartbeat_s)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    sock.setsockopt(zmq.SNDHWM, max(100, o.window))
    return sock


@dataclass
class AckTimer:
    """How long a packet waits for its ack before it is sent again, learnt from the acks
    with RFC 6298's estimator: the smoothed ack time plus four times its mean deviation,
    kept between ``floor_s`` and ``ceiling_s``. A resend doubles the wait until an ack of
    a packet sent only once gives a fresh sample (Karn's rule: the ack of a packet sent
    twice does not tell which send it answers)."""

    floor_s: float
    ceiling_s: float
    smoothed_s: float | None = None
    deviation_s: float = 0.0
    timeout_s: float = field(init=False)
    backed_off_at: float = float("-inf")

    GAIN: ClassVar[float] = 1 / 8
    DEVIATION_GAIN: ClassVar[float] = 1 / 4
    DEVIATIONS: ClassVar[int] = 4

    def __post_init__(self) -> None:
        self.timeout_s = self.floor_s

    def sample(self, seconds: float) -> None:
        """An ack came ``seconds`` after its packet's only send."""
        if self.smoothed_s is None:
            self.smoothed_s, self.deviation_s = seconds, seconds / 2
        else:
            self.deviation_s += self.DEVIATION_GAIN * (abs(self.smoothed_s - seconds)
                                                       - self.deviation_s)
            self.smoothed_s += self.GAIN * (seconds - self.smoothed_s)
        self.timeout_s = min(max(self.smoothed_s + self.DEVIATIONS * self.deviation_s,
                                 self.floor_s), self.ceiling_s)

    def backoff(self, now: float) -> None:
        """Packets went unacknowledged for the whole wait: wait twice as long. Once a
        wait, however many packets ran out in it (a full window is resent in slices, and
        a center that is away leaves them due loop after loop)."""
        if now - self.backed_off_at < self.timeout_s:
            return
        self.backed_off_at = now
        self.timeout_s = min(2 * self.timeout_s, self.ceiling_s)


@dataclass
class _InFlight:
    sent_at: float
    attempts: int
    size: int


@dataclass
class SenderStatus:
    """What the sender has done, for status pages and tests."""

    endpoint: str = ""
    sent: int = 0
    resent: int = 0
    acked: int = 0
    """Packets acknowledged, each counted once however many of its copies were answered."""
    refused: int = 0
    refused_by: dict[str, int] = field(default_factory=dict)
    """Packets refused, by the center's reason (its code, before the detail)."""
    failovers: int = 0
    in_flight: int = 0
    last_heard_at: float | None = None
    """Unix time of the center's last message."""
    center_rules_digest: str | None = None
    """The rule tables' digest the current center's last pong told (None: none told)."""
    ack_timeout_s: float = 0.0
    """How long a packet now waits for its ack before it is sent again."""
    errors: list[str] = field(default_factory=list)


def curve_keys(path: Path, what: str) -> tuple[bytes, bytes | None]:
    """A CURVE key pair (secret may be None) from a zmq certificate file."""
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} {path}: {exc}") from None


class Sender:
    """Sends the outbox's pending packets to the first center that answers."""

    def __init__(self, outbox: Outbox, endpoints: Sequence[str], *, server_public: bytes,
                 client_public: bytes, client_secret: bytes,
                 options: SenderOptions | None = None,
                 endpoint_keys: Mapping[str, bytes] | None = None) -> None:
        if not endpoints:
            raise ConfigError("evidence.endpoints: at least one center endpoint is needed")
        self.outbox = outbox
        self.endpoints = list(endpoints)
        self.keys = (server_public, client_public, client_secret)
        self.endpoint_keys = dict(endpoint_keys or {})
        """The center's public key of an endpoint served with another than ``server_public``."""
        self.options = options or SenderOptions()
        self.status = SenderStatus()
        self.on_ack: Callable[[float], None] | None = None
        """Called with the seconds each ack took (packets sent once): the metrics' histogram."""
        self.timer = self._new_timer()
        self.status.ack_timeout_s = self.timer.timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ctx: zmq.Context | None = None

    def _new_timer(self) -> AckTimer:
        return AckTimer(self.options.ack_timeout_s,
                        max(self.options.ack_timeout_s, self.options.resend_max_s))

    def start(self) -> None:
        """Start the sending thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="evidence-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the thread; unacknowledged packets stay pending in the outbox."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # The loop --------------------------------------------------------------------------

    def _socket(self, endpoint: str) -> zmq.Socket:
        """A DEALER connected to ``endpoint``."""
        assert self._ctx is not None
        server = self.endpoint_keys.get(endpoint, self.keys[0])
        sock = dealer_socket(self._ctx, (server, *self.keys[1:]), self.options)
        sock.connect(endpoint)
        self.status.endpoint = endpoint
        self.status.center_rules_digest = None
        return sock

    def _run(self) -> None:
        """Serve; an unexpected error (a damaged outbox row, a full disk while marking)
        is logged and the sender starts over after a pause, never dies quietly."""
        self._ctx = zmq.Context()
        try:
            while not self._stop.is_set():
                try:
                    self._serve()
                except Exception as exc:
                    log.exception("evidence sender failed; starting over in 1 s")
                    self.status.errors = [*self.status.errors[-9:], str(exc)]
                    self._stop.wait(1.0)
        finally:
            self._ctx.destroy(linger=0)

    def _serve(self) -> None:
        """The loop: fill the window, resend what waited too long, ping when idle, move
        to the next endpoint when the current one is silent, take acks, prune."""
        o = self.options
        index = 0
        sock = self._socket(self.endpoints[index])
        inflight: dict[int, _InFlight] = {}
        cursor = 0
        last_heard = last_ping = last_prune = time.monotonic()
        waiting_since: float | None = None
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                cursor = self._fill(sock, inflight, cursor, now)
                self._resend(sock, inflight, now)
                if now - last_ping >= o.heartbeat_s and now - last_heard >= o.heartbeat_s:
                    last_ping = now  # a ping not even sent (no connection) is unanswered
                    self._send(sock, [PING])
                    if waiting_since is None:
                        waiting_since = now
                if inflight and waiting_since is None:
                    waiting_since = now
                silent = now - max(last_heard, waiting_since or now)
                if waiting_since is not None and silent > o.failover_s:
                    index = (index + 1) % len(self.endpoints)
                    log.warning("no answer from %s for %.0f s: trying %s",
                                self.status.endpoint, silent, self.endpoints[index])
                    sock.close(linger=0)
                    sock = self._socket(self.endpoints[index])
                    inflight.clear()
                    cursor = 0
                    self.timer = self._new_timer()  # another center, another path
                    self.status.failovers += 1
                    last_heard, waiting_since = now, None
                if sock.poll(o.poll_ms, zmq.POLLIN) and self._receive(sock, inflight):
                    last_heard = time.monotonic()
                    waiting_since = None
                    self.status.last_heard_at = time.time()
                self.status.in_flight = len(inflight)
                self.status.ack_timeout_s = self.timer.timeout_s
                if now - last_prune >= o.prune_every_s:
                    last_prune = now
                    log.info("outbox: pruned %d acknowledged packets", self.outbox.prune())
        finally:
            sock.close(linger=0)

    def _send(self, sock: zmq.Socket, frames: list[bytes]) -> bool:
        """Send without blocking; False when the center is not connected or is full."""
        try:
            sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        return True

    def _fill(self, sock: zmq.Socket, inflight: dict[int, _InFlight], cursor: int,
              now: float) -> int:
        """Send new pending packets while the window has room; returns the cursor. Reads
        the outbox in small chunks, so no more is read than the window can take."""
        o = self.options
        budget = o.window_mb * 1e6 - sum(f.size for f in inflight.values())
        while len(inflight) < o.window and budget > 0:
            chunk = self.outbox.pending(min(o.window - len(inflight), FILL_CHUNK), after=cursor)
            for seq, signed in chunk:
                if budget <= 0 or not self._send(sock, packet_frames(signed)):
                    return cursor
                inflight[seq] = _InFlight(now, 1, signed.size)
                budget -= signed.size
                cursor = seq
                self.status.sent += 1
            if len(chunk) < FILL_CHUNK:
                break
        return cursor

    def _resend(self, sock: zmq.Socket, inflight: dict[int, _InFlight], now: float) -> None:
        """Send again what waited too long for its ack, the wait doubling each time."""
        wait, ceiling = self.timer.timeout_s, self.timer.ceiling_s
        due = [seq for seq, f in inflight.items()
               if now - f.sent_at > min(wait * 2 ** (f.attempts - 1), ceiling)]
        if not due:
            return
        found = dict(self.outbox.get(due[:256]))
        for seq in due[:256]:
            signed = found.get(seq)
            if signed is None:  # acknowledged or refused meanwhile
                inflight.pop(seq, None)
                continue
            if not self._send(sock, packet_frames(signed)):
                break
            f = inflight[seq]
            f.sent_at, f.attempts = now, f.attempts + 1
            self.status.resent += 1
            self.timer.backoff(now)

    def _receive(self, sock: zmq.Socket, inflight: dict[int, _InFlight]) -> bool:
        """Take every waiting message; acks are marked in one transaction each kind, and
        each teaches the ack timer how long its oldest packet sent only once took.
        Returns whether anything came."""
        ok: list[int] = []
        came = False
        now = time.monotonic()
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            came = True
            if frames[:1] == [PING]:
                try:
                    self.status.center_rules_digest = parse_pong(frames)
                except PacketError as exc:
                    log.warning("a pong from the center with a bad digest: %s", exc)
                continue
            if frames[:1] != [ACK]:
                log.warning("ignored a message of unknown kind from the center")
                continue
            try:
                ack = parse_ack(frames)
            except PacketError as exc:
                log.warning("ignored a bad ack from the center: %s", exc)
                continue
            took, answered = [], 0
            for seq in ack.sequences:
                f = inflight.pop(seq, None)
                if f is not None:  # not the answer to a resent copy of one answered already
                    answered += 1
                    if f.attempts == 1:
                        took.append(now - f.sent_at)
            if took:
                self.timer.sample(max(took))
                if self.on_ack is not None:
                    for seconds in took:
                        self.on_ack(seconds)
            if ack.status == "ok":
                ok.extend(ack.sequences)
                self.status.acked += answered
            else:
                self.status.refused += answered
                code = ack.reason.partition(":")[0].strip() or "unknown"
                self.status.refused_by[code] = self.status.refused_by.get(code, 0) + answered
                self.outbox.mark_refused(ack.sequences, ack.reason)
        if ok:
            self.outbox.mark_acked(ok)
        return came


def from_settings(settings: "EvidenceSettings") -> tuple[Outbox, Sender]:
    """The outbox and its (not yet started) sender from the ``evidence:`` settings, paths
    already resolved; ConfigError naming the option if a key file is missing or wrong."""
    try:
        key = load_signing_key(settings.signing_key)
    except KeyFileError as exc:
        raise ConfigError(f"evidence.signing_key: {exc}") from None
    client_public, client_secret = curve_keys(settings.curve_secret_key,
                                              "evidence.curve_secret_key")
    if client_secret is None:
        raise ConfigError(f"evidence.curve_secret_key {settings.curve_secret_key}: holds no "
                          "secret key (the .key_secret file of zhichao keys new is needed)")
    server_public, _ = curve_keys(settings.center_public_key, "evidence.center_public_key")
    endpoint_keys = {e: curve_keys(path, f"evidence.center_public_keys {e}")[0]
                     for e, path in settings.center_public_keys.items()}
    outbox = Outbox(settings.outbox, key, keep_days=settings.keep_days,
                    keep_light_days=settings.keep_light_days, hold_max=settings.hold_max)
    options = SenderOptions(
        zap_domain=settings.zap_domain, window=settings.window, window_mb=settings.window_mb,
        ack_timeout_s=settings.ack_timeout_s, resend_max_s=settings.resend_max_s,
        heartbeat_s=settings.heartbeat_s, failover_s=settings.failover_s)
    return outbox, Sender(outbox, settings.endpoints, server_public=server_public,
                          client_public=client_public, client_secret=client_secret,
                          options=options, endpoint_keys=endpoint_keys)
