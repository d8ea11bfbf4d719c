"""Benchmark of evidence transport: outbox → ZeroMQ (CURVE) → center store, end to end,
against raw ZeroMQ carrying the same bytes in the same run.

Each case fills a fresh edge outbox with signed packets (suspected overloads with 3
JPEG-sized images of ``--image-kb`` each, or light records without images), then times
the sender emptying it into a center receiver running in its own process (verify
signature and images, write and fsync the image files, commit the rows in batches, then
acknowledge): packets per second from the first send to the last acknowledgement. Into
SQLite always; into PostgreSQL when ``--pg URL`` or ``ZHICHAO_TEST_PG`` names a server (a
scratch database is made and dropped). The baseline sends the very same multipart
messages over a plain DEALER → ROUTER pair on loopback, without CURVE, storage or acks,
timed in the same run; ``ratio_to_raw_zmq`` is the images-into-SQLite rate over it. Each
images case also times the disk alone, just before its delivery: 900 files of the image
size written and fsync'd the way the center writes them (``disk_files_per_s_*``); the
delivery's image files per second over that is ``ratio_images_to_disk_*``, how close the
pipeline comes to what the machine's disk allows. ``resent_*`` counts the packets the
sender sent again because their ack was slower than its wait (work done twice).

The receivers case delivers one load twice, in the same run: two units' outboxes (half
of ``--packets`` suspected overloads with images each) emptied into one receiver process,
then the same into two receiver processes (one unit each: ``center run --receive-only``
as several centers on one database run it) sharing one database and one image store;
``packets_per_s_one_receiver_*`` and ``packets_per_s_two_receivers_*`` are the rates, and
``ratio_two_receivers_to_one`` their ratio into PostgreSQL (null without a server;
``ratio_two_receivers_to_one_sqlite`` into SQLite, which has one writer: its two
receivers take turns at the database's lock, so the ratio says what the second process
costs there, not what it could gain). ``--receivers-only`` runs this case alone.

The backlog case is a 4-lane site's 24-hour outage: ``--vehicles-per-day`` passes, a share
``--overload-share`` of them suspected overloads with images, all waiting in the outbox
when the center comes back; ``backlog_flush_s`` is the time to deliver them all (with
``--quick`` a tenth of the day is sent and the time scaled up; ``backlog_scale`` says so).

Every case's image files stay until the whole run is over. ext4 passes over inodes freed
in the last one to five minutes when it allocates new ones, reading each to check:
thousands of image files deleted just before a case made that case's image store spend a
third of the CPU in the inode allocator. For the same reason a run started within minutes
of another (or of a test run that deleted many files) measures images lower.

    python benchmarks/transport.py            # a table
    python benchmarks/transport.py --json     # ... and one JSON object as the last line
    python benchmarks/transport.py --quick    # shorter
"""

import sys
from pathlib import Path

# Run as a file, this folder comes first on sys.path, and benchmarks/signal.py would stand
# in for the standard library's `signal`: take the folder off before importing anything.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.timing

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import zmq
import zmq.auth
from rich.console import Console

from benchmarks.timing import report
from center.db import make_engine, upgrade
from center.durable import write_file
from center.ingest import enrol_from_files
from edge.outbox import Outbox
from edge.sender import Sender, SenderOptions
from evidence.keys import make_keys
from evidence.signing import load_signing_key
from evidence.wire import packet_frames
from sim.evidence import draft, fake_jpeg

IMAGES = 3
"""Images of a suspected overload: front, side, rear."""
CENTER = """
import json, signal, sys, threading
from center.receiver import Receiver
from center.settings import CenterSettings
from center.service import settle_heap
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
rx = Receiver(CenterSettings.model_validate(json.loads(sys.argv[1])))
settle_heap()  # as `zhichao center run` does
rx.start()
print("up", flush=True)
stop.wait()
rx.stop(30)
print(json.dumps({**rx.counts, **{f"{k}_s": v for k, v in rx.busy_s.items()}}), flush=True)
"""


def free_endpoint() -> str:
    """A loopback endpoint nobody listens on."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.ROUTER)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    s.close(linger=0)
    return f"tcp://127.0.0.1:{port}"


def fill(box: Outbox, vehicles: int, overloads: int, image_bytes: int, *,
         device: str = "bench-1", seed: int = 0) -> float:
    """Put ``vehicles`` passes of ``device`` (the first ``overloads`` with IMAGES images,
    their bytes drawn from ``seed`` on: units given different seeds send different
    images, as real cameras do, and the center stores each once by its digest) in blocks
    of 50, as the signal loop hands them over; returns the seconds it took."""
    t = time.perf_counter()
    items = []
    for n in range(vehicles):
        images = tuple(fake_jpeg(image_bytes, seed + n * IMAGES + j)
                       for j in range(IMAGES)) if n < overloads else ()
        items.append((draft(device, n, suspected=bool(images), images=images,
                            lane=1 + n % 4), images))
        if len(items) == 50:
            box.put_many(items)
            items = []
    if items:
        box.put_many(items)
    return time.perf_counter() - t


def disk_rate(folder: Path, files: int, size: int, threads: int = 16) -> float:
    """Files of ``size`` bytes per second that the disk takes written and fsync'd the way
    the center writes images (:func:`center.durable.write_file`, ``threads`` at once,
    spread over 256 folders): what the images of a delivery can reach at best. The files
    stay until the run ends, like the cases' images."""
    data = fake_jpeg(size, 0)
    paths = [folder / f"{n % 256:02x}" / f"{n}.jpg" for n in range(files)]
    for d in {p.parent for p in paths}:
        d.mkdir(parents=True, exist_ok=True)
    os.sync()
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: [write_file(p, data) for p in paths[k::threads]],
                      range(threads)))
    return files / (time.perf_counter() - t)


def raw_zmq_rate(box: Outbox, count: int) -> float:
    """Messages per second of a plain DEALER → ROUTER over loopback, same frames."""
    messages = [packet_frames(s) for _, s in box.pending(count)]
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    router.rcvhwm = dealer.sndhwm = 10_000
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    dealer.send_multipart([b"hello"])
    router.recv_multipart()
    got = []

    def receive() -> None:
        while len(got) < len(messages) and router.poll(10_000):
            router.recv_multipart(copy=False)
            got.append(1)

    t = time.perf_counter()
    th = threading.Thread(target=receive)
    th.start()
    for frames in messages:
        dealer.send_multipart(frames, copy=False)
    th.join(60)
    elapsed = time.perf_counter() - t
    ctx.destroy(linger=0)
    if len(got) != len(messages):
        raise SystemExit(f"raw ZeroMQ: {len(got)} of {len(messages)} messages arrived")
    return len(messages) / elapsed


def unit_name(k: int) -> str:
    """The key name of the ``k``-th unit (0: ``edge``, as a one-unit case has always had)."""
    return "edge" if k == 0 else f"edge{k + 1}"


class Case:
    """A fresh site in a scratch folder: keys, an outbox per unit (``units`` of them,
    devices bench-1, bench-2, ...), a center database."""

    def __init__(self, root: Path, database: str | None, units: int = 1) -> None:
        self.root = root
        keys = root / "keys"
        make_keys(keys, "center", curve_only=True)
        self.database = database or str(root / "center.db")
        engine = make_engine(self.database)
        upgrade(engine)
        for k in range(units):
            make_keys(keys, unit_name(k))
            enrol_from_files(engine, f"bench-{k + 1}", keys / f"{unit_name(k)}.sign.pub",
                             keys / f"{unit_name(k)}.key")
        engine.dispose()
        self.endpoint = free_endpoint()
        self.boxes = [Outbox(root / f"outbox{k or ''}.db",
                             load_signing_key(keys / f"{unit_name(k)}.sign"))
                      for k in range(units)]
        self.box = self.boxes[0]
        self.resent = 0

    def close(self) -> None:
        """Free the case's disk space (the outboxes, the center database: a few large
        files) but keep its many image files until the run is over (see the module's
        notes)."""
        for box in self.boxes:
            box.close()
        for entry in self.root.iterdir():
            if entry.name not in ("images", "disk"):
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def deliver(self, timeout_s: float, receivers: int = 1) -> float:
        """Start ``receivers`` center receivers (processes of their own, one database, one
        image store), empty the outboxes into them (unit k into receiver k mod
        ``receivers``); seconds from first send to last ack."""
        keys = self.root / "keys"
        endpoints = [self.endpoint] + [free_endpoint() for _ in range(receivers - 1)]
        centers = []
        for endpoint in endpoints:
            settings = {"database": self.database, "images_dir": str(self.root / "images"),
                        "receiver": {"listen": [endpoint], "batch_max": 500,
                                     "server_secret_key": str(keys / "center.key_secret")}}
            centers.append(subprocess.Popen([sys.executable, "-c", CENTER,
                                             json.dumps(settings)],
                                            stdout=subprocess.PIPE, text=True))
        try:
            if any(c.stdout.readline().strip() != "up" for c in centers):
                raise SystemExit("a center did not start")
            server_public, _ = zmq.auth.load_certificate(keys / "center.key")
            senders = []
            for k, box in enumerate(self.boxes):
                client_public, client_secret = zmq.auth.load_certificate(
                    keys / f"{unit_name(k)}.key_secret")
                senders.append(Sender(box, [endpoints[k % receivers]],
                                      server_public=server_public,
                                      client_public=client_public,
                                      client_secret=client_secret,
                                      options=SenderOptions(poll_ms=5)))
            total = sum(box.counts()["pending"] for box in self.boxes)
            t = time.perf_counter()
            for sender in senders:
                sender.start()
            deadline = t + timeout_s
            # the senders' own tallies are read while waiting, the outboxes only to
            # confirm: counting their rows every 10 ms would take CPU from the timed run
            while time.perf_counter() < deadline and not (
                    sum(s.status.acked + s.status.refused for s in senders) >= total
                    and all(box.counts()["pending"] == 0 for box in self.boxes)):
                time.sleep(0.01)
            elapsed = time.perf_counter() - t
            for sender in senders:
                sender.stop()
            self.resent = sum(s.status.resent for s in senders)
            acked = sum(box.counts()["acked"] for box in self.boxes)
            if acked < total:
                raise SystemExit(f"only {acked} of {total} delivered in {timeout_s} s")
            return elapsed
        finally:
            self.center_counts: dict = {}
            for center in centers:
                center.terminate()
            for center in centers:
                counts = json.loads(center.communicate(timeout=60)[0] or "{}")
                for key, value in counts.items():
                    self.center_counts[key] = self.center_counts.get(key, 0) + value


def scratch_pg(server: str) -> tuple[str, str]:
    """A new database on the server: (its SQLAlchemy URL, its name)."""
    name = f"zhichao_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = server.rsplit("/", 1)[0].split("://", 1)[1]
    return f"postgresql+psycopg://{base}/{name}", name


def drop_pg(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_case(args: argparse.Namespace, console: Console, kind: str, store: str,
             pg: str | None) -> dict:
    """Fill, baseline, deliver; the case's figures."""
    n = args.packets if kind == "images" else args.records
    root = Path(tempfile.mkdtemp(prefix=f"{kind}-{store}-", dir=args.scratch))
    name = case = None
    try:
        url = None
        if store == "pg":
            url, name = scratch_pg(pg)
        case = Case(root, url)
        fill_s = fill(case.box, n, n if kind == "images" else 0, args.image_kb * 1000)
        raw = raw_zmq_rate(case.box, n)
        disk = disk_rate(root / "disk", 900, args.image_kb * 1000) if kind == "images" \
            else None
        os.sync()  # what filling left in the page cache does not land in the timing
        seconds = case.deliver(args.timeout_s)
        rate = n / seconds
        busy = case.center_counts
        console.print(f"{kind} into {store}: {n} packets in {seconds:.2f} s = {rate:.0f}/s; "
                      f"raw ZeroMQ {raw:.0f}/s; outbox filled at {n / fill_s:.0f}/s; center "
                      f"busy verifying {busy.get('verify_s', 0):.2f} s, storing "
                      f"{busy.get('store_s', 0):.2f} s; {case.resent} resent"
                      + (f"; the disk alone takes {disk:.0f} image files/s" if disk else ""))
        return {"rate": rate, "raw": raw, "fill": n / fill_s, "disk": disk,
                "resent": case.resent}
    finally:
        if case is not None:
            case.close()
        if name:
            drop_pg(pg, name)


def receivers_case(args: argparse.Namespace, console: Console, store: str,
                   pg: str | None) -> dict:
    """The same load (two units, ``--packets`` suspected overloads with images between
    them) through one receiver, then through two, into ``store``; both rates and their
    ratio."""
    n = args.packets // 2 * 2
    rates = {}
    for receivers in (1, 2):
        root = Path(tempfile.mkdtemp(prefix=f"receivers{receivers}-{store}-",
                                     dir=args.scratch))
        name = case = None
        try:
            url = None
            if store == "pg":
                url, name = scratch_pg(pg)
            case = Case(root, url, units=2)
            for k, box in enumerate(case.boxes):
                fill(box, n // 2, n // 2, args.image_kb * 1000, device=f"bench-{k + 1}",
                     seed=k * n * IMAGES)
            os.sync()
            seconds = case.deliver(args.timeout_s, receivers=receivers)
            rates[receivers] = n / seconds
            console.print(f"two units into {store} through {receivers} receiver"
                          f"{'s' if receivers > 1 else ''}: {n} packets in {seconds:.2f} s = "
                          f"{rates[receivers]:.0f}/s; {case.resent} resent")
        finally:
            if case is not None:
                case.close()
            if name:
                drop_pg(pg, name)
    return {f"packets_per_s_one_receiver_{store}": rates[1],
            f"packets_per_s_two_receivers_{store}": rates[2],
            f"ratio_two_receivers_to_one_{store}": rates[2] / rates[1]}


def receivers(args: argparse.Namespace, console: Console, pg: str | None) -> dict:
    """The receivers case into SQLite, and into PostgreSQL when a server is given;
    ``ratio_two_receivers_to_one`` is PostgreSQL's (several centers need it)."""
    out = receivers_case(args, console, "sqlite", None)
    if pg:
        out.update(receivers_case(args, console, "pg", pg))
    out["ratio_two_receivers_to_one"] = out.get("ratio_two_receivers_to_one_pg")
    return out


def backlog(args: argparse.Namespace, console: Console) -> dict:
    """A day's outage of a 4-lane site, delivered into SQLite."""
    scale = 0.1 if args.quick else 1.0
    vehicles = int(args.vehicles_per_day * scale)
    overloads = int(vehicles * args.overload_share)
    case = Case(Path(tempfile.mkdtemp(prefix="backlog-", dir=args.scratch)), None)
    fill(case.box, vehicles, overloads, args.image_kb * 1000)
    os.sync()
    seconds = case.deliver(args.timeout_s)
    case.close()
    console.print(f"backlog: {vehicles} passes ({overloads} with images) in {seconds:.1f} s")
    return {"backlog_vehicles": vehicles, "backlog_overloads": overloads,
            "backlog_scale": scale, "backlog_measured_s": seconds,
            "backlog_flush_s": seconds / scale}


def run(args: argparse.Namespace, console: Console) -> dict:
    """All figures."""
    pg = args.pg or os.environ.get("ZHICHAO_TEST_PG")
    out: dict = {"packets_images": args.packets, "records": args.records,
                 "image_kb": args.image_kb}
    if args.receivers_only:
        out.update(receivers(args, console, pg))
        return out
    for store in ("sqlite", "pg"):
        for kind, key in (("images", "packets_per_s_images"), ("records", "records_per_s")):
            if store == "pg" and not pg:
                out[f"{key}_{store}"] = None
                continue
            r = run_case(args, console, kind, store, pg)
            out[f"{key}_{store}"] = r["rate"]
            out[f"raw_zmq_per_s_{kind}_{store}"] = r["raw"]
            out[f"ratio_to_raw_zmq_{kind}_{store}"] = r["rate"] / r["raw"]
            out[f"outbox_put_per_s_{kind}_{store}"] = r["fill"]
            out[f"resent_{kind}_{store}"] = r["resent"]
            if r["disk"]:
                out[f"disk_files_per_s_{store}"] = r["disk"]
                out[f"ratio_images_to_disk_{store}"] = r["rate"] * IMAGES / r["disk"]
    out["ratio_to_raw_zmq"] = out["ratio_to_raw_zmq_images_sqlite"]
    out.update(receivers(args, console, pg))
    out.update(backlog(args, console))
    return out


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=None,
                        help="packets with images per case (default 2000; --quick 300)")
    parser.add_argument("--records", type=int, default=None,
                        help="light records per case (default 30000; --quick 5000)")
    parser.add_argument("--image-kb", type=int, default=150, help="size of each image")
    parser.add_argument("--vehicles-per-day", type=int, default=40_000,
                        help="passes of the 4-lane site in 24 hours (default 40000)")
    parser.add_argument("--overload-share", type=float, default=0.05,
                        help="share of passes that are suspected overloads (default 0.05)")
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL server (default: "
                        "ZHICHAO_TEST_PG; neither: the PostgreSQL figures are null)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch folder on the disk to measure (default: the system's)")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true", help="a shorter run")
    parser.add_argument("--receivers-only", action="store_true",
                        help="only the receivers case: one receiver against two")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args()
    args.packets = args.packets or (300 if args.quick else 2000)
    args.records = args.records or (5000 if args.quick else 30_000)
    console = Console(stderr=args.json)
    console.print(f"transport: {args.packets} packets with 3 × {args.image_kb} kB images, "
                  f"{args.records} records, a day of {args.vehicles_per_day} passes")
    args.scratch = Path(tempfile.mkdtemp(prefix="zc-bench-", dir=args.workdir))
    try:
        figures = run(args, console)
    finally:
        shutil.rmtree(args.scratch, ignore_errors=True)
    report("evidence transport", figures, console, args.json)


if __name__ == "__main__":
    main()
