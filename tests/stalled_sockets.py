"""Hold both ends of the evidence link with their input stalled, for the seconds given in
argv[1], then print how many messages came through. The center's ROUTER and the edges'
DEALERs are made by the project's own functions, with tiny receive queues. The center reads
slowly, answers each message with more than an edge reads, and restarts every second; the
edges never read and reconnect every half second. Run in its own process: the failure this
guards against (libzmq aborting on a heartbeat, see evidence.wire.tcp_keepalive) kills
it."""

import sys
import threading
import time

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from center.receiver import router_socket
from center.settings import ReceiverSettings
from edge.sender import SenderOptions, dealer_socket

QUEUE = 10
"""Receive queue, in messages, at both ends: full within the first few messages."""
RESTART_S = 1.0
"""The center closes its socket and binds a new one this often."""


def edge(ctx: zmq.Context, endpoint: str, keys: tuple[bytes, bytes, bytes],
         until: float) -> None:
    """Connect, send as fast as the queue takes, drop the connection, again."""
    while time.monotonic() < until:
        sock = dealer_socket(ctx, keys, SenderOptions(heartbeat_s=0.1, window=100))
        sock.setsockopt(zmq.RCVHWM, QUEUE)
        sock.connect(endpoint)
        leave = time.monotonic() + 0.5
        while time.monotonic() < leave:
            try:
                sock.send_multipart([b"ZCP1", bytes(20_000)], zmq.NOBLOCK)
            except zmq.Again:
                time.sleep(0.001)
        sock.close(linger=0)


def main(seconds: float) -> None:
    ctx = zmq.Context()
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    server_public, server_secret = zmq.curve_keypair()

    def center(port: int = 0) -> tuple[zmq.Socket, int]:
        sock = router_socket(ctx, ReceiverSettings(heartbeat_s=0.1), server_public,
                             server_secret)
        sock.setsockopt(zmq.RCVHWM, QUEUE)
        if port:
            give_up = time.monotonic() + 5.0
            while True:  # the closed socket's listener goes in libzmq's own time
                try:
                    sock.bind(f"tcp://127.0.0.1:{port}")
                    return sock, port
                except zmq.ZMQError as exc:
                    if exc.errno != zmq.EADDRINUSE or time.monotonic() > give_up:
                        raise
                    time.sleep(0.01)
        return sock, sock.bind_to_random_port("tcp://127.0.0.1")

    router, port = center()
    until = time.monotonic() + seconds
    edges = [threading.Thread(target=edge, args=(ctx, f"tcp://127.0.0.1:{port}",
                                                 (server_public, *zmq.curve_keypair()),
                                                 until))
             for _ in range(4)]
    for thread in edges:
        thread.start()
    received = 0
    restart_at = time.monotonic() + RESTART_S
    while time.monotonic() < until:
        time.sleep(0.3)  # a store slower than the edges
        for _ in range(50):
            try:
                identity, *_ = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            received += 1
            for _ in range(20):  # more answers than an edge reads (none)
                router.send_multipart([identity, b"ZCA1", bytes(1000)], zmq.NOBLOCK)
        if time.monotonic() > restart_at:  # the center restarts on the same port
            router.close(linger=0)
            router, _ = center(port)
            restart_at = time.monotonic() + RESTART_S
    for thread in edges:
        thread.join()
    router.close(linger=0)
    auth.stop()
    ctx.term()
    print("received", received, flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]))
