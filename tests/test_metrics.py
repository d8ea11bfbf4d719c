"""Prometheus metrics of the edge and the center, read by a real Prometheus server.

A center (``run_center`` in a thread: receiver, cases thread and metrics page) takes three
packets of an enrolled unit (three trips, three cases awaiting review) and refuses one
that names another device; a roadside unit (``RoadsideUnit`` weighing a simulated
digitiser's traffic) sends its vehicles to the same center. Debian's ``prometheus``,
started here on a temporary config and storage, scrapes both pages every second on
127.0.0.1; the test waits (at most 30 s) until its query API answers with the numbers
the unit and the database hold. The exposition text is also read directly for names,
types and labels.
"""

import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from center_factory import T0, make_packet
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from test_center_service import RunningCenter, wait_for

from center.ingest import enrol_from_files
from center.ingest_models import StoredPacket
from center.law_models import Case
from center.metrics import CasesCollector
from center.service import run_center
from center.settings import CenterSettings
from drivers.strips import StripArray
from edge.plate_workers import PlateSettings
from edge.settings import EdgeSettings, EvidenceSettings, UnitSettings
from edge.unit import RoadsideUnit
from evidence.keys import make_keys
from evidence.packet import image_ref
from evidence.signing import sign
from evidence.wire import packet_frames, parse_ack
from sim.evidence import fake_jpeg
from sim.serial_twins import DigitiserTwin
from sim.traffic import generate_traffic
from zhichao.errors import ConfigError

pytestmark = pytest.mark.timeout(180)

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
WAIT_S = 30.0


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode("utf-8")


class Prometheus:
    """A Prometheus server of its own (temporary config and storage, 127.0.0.1 only)
    scraping ``targets`` (job → HOST:PORT) every second."""

    def __init__(self, tmp_path: Path, targets: dict[str, str]) -> None:
        if not Path(PROMETHEUS).exists():
            pytest.skip("Debian's prometheus is not installed (make system installs it)")
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [where]}]}
                               for job, where in targets.items()]}))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (tmp_path / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited; see prometheus.log"
            try:
                get(f"{self.url}/-/ready")
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"prometheus not ready within {WAIT_S} s")

    def value(self, query: str) -> float | None:
        """The instant query's single value (None: no series)."""
        answer = yaml.safe_load(get(f"{self.url}/api/v1/query?"
                                    + urllib.parse.urlencode({"query": query})))
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


def wait_until_answers(prometheus: Prometheus, expected: dict[str, Callable]) -> dict:
    """Query each expression until every answer equals what its callable says now (the
    truth may still move while the scrapes catch up); the last answers on failure."""
    deadline = time.monotonic() + WAIT_S
    while True:
        got = {q: prometheus.value(q) for q in expected}
        want = {q: float(truth()) for q, truth in expected.items()}
        if got == want:
            return got
        assert time.monotonic() < deadline, f"after {WAIT_S} s: got {got}, want {want}"
        time.sleep(0.5)


class PollingUnit:
    """A roadside unit made, started, polled and stopped in a thread of its own, as
    ``edge run`` does in its main thread (the outbox's first connection is the thread's
    that made it: a put from another thread would open one under the outbox's lock)."""

    def __init__(self, make: Callable[[], RoadsideUnit]) -> None:
        self.make = make
        self.unit: RoadsideUnit | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        unit = self.unit = self.make()
        unit.start()
        self.ready.set()
        try:
            while not self._stop.is_set():
                unit.poll()
                self._stop.wait(0.05)
        finally:
            unit.stop()

    def __enter__(self) -> RoadsideUnit:
        self._thread.start()
        assert self.ready.wait(30), "the unit did not start"
        assert self.unit is not None
        return self.unit

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the unit did not stop"


def edge_unit(tmp_path: Path, center_endpoint: str, port: str, metrics: str,
              device_id: str = "unit-1") -> RoadsideUnit:
    """A sending unit ``unit-1`` (keys of the ``center`` fixture) on a digitiser twin at
    ``port``, metrics on ``metrics``; no plate reader (no camera either)."""
    keys = tmp_path / "edge-keys"
    shutil.copy(tmp_path / "keys" / "center.key", keys / "center.key")
    settings = EdgeSettings(
        device_id=device_id, site=StripArray(lanes=2), plates=PlateSettings(workers=0),
        unit=UnitSettings(metrics_address=metrics),
        evidence=EvidenceSettings(site="G60 K123+450", direction="east",
                                  outbox=Path("outbox.db"), signing_key=keys / "unit.sign",
                                  curve_secret_key=keys / "unit.key_secret",
                                  center_public_key=keys / "center.key",
                                  endpoints=[center_endpoint]),
        devices={"digitiser": {"kind": "serial", "protocol": "digitiser", "port": port}})
    return RoadsideUnit(settings, tmp_path, send=True)


@pytest.fixture
def center(tmp_path) -> Iterator[RunningCenter]:
    """The center of test_center_service with its metrics page on a free port, and the
    unit ``unit-1`` enrolled before it starts."""
    running = RunningCenter(f"sqlite:///{tmp_path / 'center.db'}", tmp_path)
    make_keys(tmp_path / "edge-keys", "unit")
    enrol_from_files(running.engine, "unit-1", tmp_path / "edge-keys" / "unit.sign.pub",
                     tmp_path / "edge-keys" / "unit.key")
    running.settings = running.settings.model_copy(
        update={"metrics_address": f"127.0.0.1:{free_port()}"})
    running.thread = threading.Thread(target=run_center, args=(running.settings,),
                                      kwargs={"stop": running.stop}, daemon=True)
    with running:
        yield running


def refused_reason(center: RunningCenter) -> str:
    """Send a packet of D1's key that names device D2; the reason code of its refusal."""
    signed = sign(make_packet(device_id="D2", sequence=1, images=0), [], center.key)
    center.dealer.send_multipart(packet_frames(signed))
    assert center.dealer.poll(30_000), "no answer to the refused packet"
    ack = parse_ack(center.dealer.recv_multipart())
    assert ack.status == "refused", ack
    return ack.reason.partition(":")[0]


def count(engine, query) -> int:
    with Session(engine) as session:
        return session.scalar(query)


def test_prometheus_scrapes_the_edge_and_the_center(center, tmp_path):
    for sequence in (1, 2, 3):  # 7 h apart: three trips, three cases
        image = fake_jpeg(20_000, sequence)
        center.send(make_packet(sequence=sequence, captured_at=T0 + timedelta(
            hours=7 * sequence), images=0).model_copy(
            update={"images": [image_ref("front", image)]}), [image])
    center.acked({1, 2, 3})
    wait_for(center.engine, {1, 2, 3}, WAIT_S)
    reason = refused_reason(center)
    site = StripArray(lanes=2)
    twin = DigitiserTwin(site, generate_traffic(site, 20.0, seed=4), speed=4.0, render_seed=4,
                         duration_s=24.0)
    edge_metrics = f"127.0.0.1:{free_port()}"
    port = twin.start()
    prometheus = Prometheus(tmp_path, {"center": center.settings.metrics_address,
                                       "edge": edge_metrics})
    try:
        with PollingUnit(lambda: edge_unit(tmp_path, center.settings.receiver.listen[0],
                                           port, edge_metrics)) as unit:
            assert twin.finished.wait(60), "the digitiser twin did not finish its traffic"
            engine = center.engine
            from_unit = select(func.count()).select_from(StoredPacket).where(
                StoredPacket.device_id == "unit-1")
            got = wait_until_answers(prometheus, {
                'up{job="center"}': lambda: 1, 'up{job="edge"}': lambda: 1,
                "zhichao_center_packets_ingested_total": lambda: count(
                    engine, select(func.count()).select_from(StoredPacket)),
                f'zhichao_center_refusals_total{{reason="{reason}"}}': lambda: 1,
                'zhichao_center_cases_awaiting{status="awaiting_review"}': lambda: count(
                    engine, select(func.count()).select_from(Case).where(
                        Case.status == "awaiting_review")),
                "sum(zhichao_edge_vehicles_weighed_total)": lambda: unit.stats["weighed"],
                "zhichao_edge_packets_acked_total": lambda: count(engine, from_unit),
                "zhichao_edge_outbox_pending": lambda: 0,
                "zhichao_edge_outbox_oldest_pending_seconds": lambda: 0,
                "zhichao_edge_plate_backlog": lambda: 0})
            assert got["sum(zhichao_edge_vehicles_weighed_total)"] >= 3
            assert got["zhichao_edge_packets_acked_total"] == \
                got["sum(zhichao_edge_vehicles_weighed_total)"]
            assert got['zhichao_center_cases_awaiting{status="awaiting_review"}'] >= 3
            assert got["zhichao_center_packets_ingested_total"] == \
                3 + got["zhichao_edge_packets_acked_total"]
            assert prometheus.value("zhichao_edge_ack_latency_seconds_count") > 0
            assert prometheus.value('zhichao_center_cases_oldest_age_seconds'
                                    '{status="awaiting_review"}') > 0
            edge_text = get(f"http://{edge_metrics}/metrics")
            center_text = get(f"http://{center.settings.metrics_address}/metrics")
    finally:
        prometheus.stop()
        twin.stop()
    check_edge_text(edge_text, unit)
    check_center_text(center_text, reason)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def check_edge_text(text: str, unit: RoadsideUnit) -> None:
    """Names, types and labels of the edge's page, per lane as the unit counted."""
    found = families(text)
    kinds = {"zhichao_edge_vehicles_weighed": "counter", "zhichao_edge_bad_frames": "counter",
             "zhichao_edge_blocks_dropped": "counter", "zhichao_edge_plate_backlog": "gauge",
             "zhichao_edge_outbox_pending": "gauge", "zhichao_edge_resends": "counter",
             "zhichao_edge_outbox_oldest_pending_seconds": "gauge",
             "zhichao_edge_ack_latency_seconds": "histogram", "zhichao_edge_refusals": "counter",
             "zhichao_edge_outbox_disk_full": "gauge", "zhichao_edge_outbox_pruned": "counter",
             "zhichao_edge_outbox_light_dropped": "counter"}
    assert {name: found[name].type for name in kinds} == kinds
    lanes = {s.labels["lane"]: s.value for s in found["zhichao_edge_vehicles_weighed"].samples
             if s.name.endswith("_total")}
    assert lanes == {str(k): float(v) for k, v in unit.weighed_by_lane.items()}
    assert {s.labels["device"] for s in found["zhichao_edge_bad_frames"].samples} == \
        {"digitiser"}


def check_center_text(text: str, reason: str) -> None:
    """Names, types and labels of the center's page."""
    found = families(text)
    assert found["zhichao_center_packets_ingested"].type == "counter"
    refusals = {s.labels["reason"]: s.value for s in found["zhichao_center_refusals"].samples
                if s.name.endswith("_total")}
    assert refusals == {reason: 1.0}
    statuses = {s.labels["status"] for s in found["zhichao_center_cases_awaiting"].samples}
    assert "awaiting_review" in statuses and "closed" not in statuses
    assert found["zhichao_center_cases_oldest_age_seconds"].type == "gauge"


def test_the_cases_are_read_at_most_once_per_interval():
    """However often it is scraped, the database is asked once per interval."""
    calls = []

    def read() -> dict:
        calls.append(time.monotonic())
        return {"awaiting_review": (2, None)}

    collector = CasesCollector(read, ttl_s=60.0)
    for _ in range(20):
        samples = {(m.name, s.labels["status"]): s.value
                   for m in collector.collect() for s in m.samples}
    assert len(calls) == 1
    assert samples[("zhichao_center_cases_awaiting", "awaiting_review")] == 2
    assert samples[("zhichao_center_cases_awaiting", "notified")] == 0


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:80", "127.0.0.1:70000",
                                     "http://127.0.0.1:9464", "127.0.0.1:-1"])
def test_a_bad_metrics_address_is_refused(address):
    with pytest.raises(ValidationError, match="metrics_address"):
        UnitSettings(metrics_address=address)


def scrape(address: str) -> dict[tuple[str, tuple], float]:
    """The page at ``address`` as {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(get(f"http://{address}/metrics"))
            for s in f.samples}


def wait_scraped(address: str, want: Callable[[dict], bool]) -> dict:
    """Scrape until ``want`` holds (at most WAIT_S); the last page on failure."""
    deadline = time.monotonic() + WAIT_S
    while not want(page := scrape(address)):
        assert time.monotonic() < deadline, page
        time.sleep(0.5)
    return page


def test_refusals_by_reason_on_both_sides(center, tmp_path):
    """A unit named unit-2 behind unit-1's enrolled keys: the center refuses each of its
    packets as unknown_device, and both pages count them under that reason."""
    site = StripArray(lanes=2)
    twin = DigitiserTwin(site, generate_traffic(site, 12.0, seed=5), speed=4.0, render_seed=5,
                         duration_s=16.0)
    edge_metrics = f"127.0.0.1:{free_port()}"
    port = twin.start()
    try:
        with PollingUnit(lambda: edge_unit(tmp_path, center.settings.receiver.listen[0], port,
                                           edge_metrics, device_id="unit-2")) as unit:
            assert twin.finished.wait(60), "the digitiser twin did not finish its traffic"
            refused = (("reason", "unknown_device"),)

            def settled(page: dict) -> bool:
                weighed = unit.stats["weighed"]
                return weighed > 0 and page.get(("zhichao_edge_refusals_total", refused)) \
                    == weighed and page[("zhichao_edge_outbox_pending", ())] == 0

            edge = wait_scraped(edge_metrics, settled)
            center_page = scrape(center.settings.metrics_address)
    finally:
        twin.stop()
    assert edge[("zhichao_edge_packets_acked_total", ())] == 0
    assert edge[("zhichao_edge_device_connected", (("device", "digitiser"),))] == 1
    assert center_page[("zhichao_center_refusals_total", refused)] == \
        edge[("zhichao_edge_refusals_total", refused)]
    assert center_page[("zhichao_center_packets_ingested_total", ())] == 0


def test_a_unit_that_cannot_reach_its_center_shows_its_backlog(tmp_path):
    """No center at the endpoint: every packet stays pending, and the oldest ages."""
    site = StripArray(lanes=2)
    twin = DigitiserTwin(site, generate_traffic(site, 12.0, seed=6), speed=4.0, render_seed=6,
                         duration_s=16.0)
    make_keys(tmp_path / "keys", "center", curve_only=True)
    make_keys(tmp_path / "edge-keys", "unit")
    edge_metrics = f"127.0.0.1:{free_port()}"
    port = twin.start()
    nobody = f"tcp://127.0.0.1:{free_port()}"
    try:
        with PollingUnit(lambda: edge_unit(tmp_path, nobody, port, edge_metrics)) as unit:
            assert twin.finished.wait(60), "the digitiser twin did not finish its traffic"

            def settled(page: dict) -> bool:
                weighed = unit.stats["weighed"]
                return weighed > 0 and page[("zhichao_edge_outbox_pending", ())] == weighed \
                    and page[("zhichao_edge_outbox_oldest_pending_seconds", ())] > 1.0

            page = wait_scraped(edge_metrics, settled)
    finally:
        twin.stop()
    assert page[("zhichao_edge_packets_acked_total", ())] == 0
    assert page[("zhichao_edge_ack_latency_seconds_count", ())] == 0


def test_a_metrics_port_in_use_stops_the_center_with_the_setting_named(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        settings = CenterSettings(database=str(tmp_path / "center.db"),
                                  metrics_address=address)
        with pytest.raises(ConfigError, match=f"metrics_address {address}: cannot serve"):
            run_center(settings, seconds=1)
