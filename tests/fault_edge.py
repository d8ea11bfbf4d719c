"""A roadside unit the fault tests kill with SIGKILL: an outbox writer and its sender,
configured by one JSON argument.

    python tests/fault_edge.py '{"outbox": ..., "signing_key": ..., ...}'

Run as a file, not imported by the tests: a kill -9 must hit a real process.
"""

import json
import sys
import time
from pathlib import Path

import zmq.auth

from edge.outbox import Outbox
from edge.sender import Sender, SenderOptions
from evidence.signing import load_signing_key
from sim.evidence import draft, fake_jpeg


def edge(cfg: dict) -> None:
    """Put ``produce`` packets (``group`` per transaction, every ``images_every``-th a
    suspected overload with 3 images), sending all the while; then keep sending until
    everything is acknowledged or ``seconds`` pass."""
    outbox = Outbox(Path(cfg["outbox"]), load_signing_key(Path(cfg["signing_key"])))
    sender = None
    if cfg.get("send", True):
        client_public, client_secret = zmq.auth.load_certificate(cfg["curve_secret_key"])
        server_public, _ = zmq.auth.load_certificate(cfg["center_public_key"])
        sender = Sender(outbox, cfg["endpoints"], server_public=server_public,
                        client_public=client_public, client_secret=client_secret,
                        options=SenderOptions(ack_timeout_s=cfg.get("ack_timeout_s", 1.0),
                                              failover_s=cfg.get("failover_s", 3.0),
                                              heartbeat_s=1.0))
        sender.start()
    print("started", flush=True)
    start = outbox.counts()["last_sequence"]
    group, every = cfg.get("group", 5), cfg.get("images_every", 10)
    for first in range(start, start + cfg.get("produce", 0), group):
        items = []
        for n in range(first, first + group):
            if every and n % every == 0:
                images = tuple(fake_jpeg(cfg.get("image_bytes", 20_000), n * 3 + j)
                               for j in range(3))
                items.append((draft(cfg["device_id"], n, suspected=True, images=images),
                              images))
            else:
                items.append((draft(cfg["device_id"], n), ()))
        outbox.put_many(items)
        time.sleep(cfg.get("pause_s", 0.002))
    deadline = time.monotonic() + cfg.get("seconds", 30.0)
    while sender and outbox.counts()["pending"] and time.monotonic() < deadline:
        time.sleep(0.02)
    if sender:
        sender.stop()
    print("done", json.dumps(outbox.counts()), flush=True)


if __name__ == "__main__":
    edge(json.loads(sys.argv[1]))
