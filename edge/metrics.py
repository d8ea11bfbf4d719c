"""A roadside unit's Prometheus metrics (``unit.metrics_address``; docs/metrics.md).

Nearly every number already exists in the unit (its counts, the signal loop's, each
device's, the plate readers' backlog, the sender's counters), so a custom collector reads
them when Prometheus scrapes and the weighing loop does no extra work. The ack latency is
kept nowhere, so it is observed as it happens (a histogram, fed by the sender's
``on_ack`` hook). The outbox's depth and its oldest pending packet are read from the
outbox file on a connection of the collector's own: the HTTP server answers each scrape
on a new thread, and the outbox would open (and keep) a connection for each.
"""

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zhichao.errors import ConfigError
from zhichao.metrics import Cached, MetricsServer

if TYPE_CHECKING:  # the unit pulls in every driver and OpenCV; the collector needs none
    from edge.outbox import Outbox
    from edge.unit import RoadsideUnit

log = logging.getLogger(__name__)

PREFIX = "zhichao_edge"
ACK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Ack latency buckets: a few ms on a LAN to the sender's longest resend wait."""
OUTBOX_TTL_S = 1.0
"""The outbox file is read at most once a second, however often it is scraped."""


class OutboxReader:
    """Pending packets and the age of the oldest, on a read-only connection of its own
    (guarded by a lock: the metrics server answers each scrape on a thread of its own)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0,
                                   check_same_thread=False)
        self._lock = threading.Lock()
        self.cached = Cached(self._read, OUTBOX_TTL_S)

    def _read(self) -> tuple[int, float | None]:
        """Pending packets and the Unix time the oldest was stored (None: none pending).
        Both on the partial index of pending packets."""
        with self._lock:
            pending = self._db.execute(
                "SELECT COUNT(*) FROM packets WHERE state = 'pending'").fetchone()[0]
            oldest = self._db.execute(
                "SELECT created_at FROM packets WHERE state = 'pending' "
                "ORDER BY sequence LIMIT 1").fetchone()
        return pending, oldest[0] if oldest else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class UnitCollector(Collector):
    """The unit's numbers at scrape time, as Prometheus metric families."""

    def __init__(self, unit: "RoadsideUnit") -> None:
        self.unit = unit
        link = unit.link
        self.outbox = OutboxReader(link.outbox.path) if link is not None else None

    def collect(self) -> Iterator[Metric]:
        yield from self._weighing()
        yield from self._devices()
        if self.unit.link is not None and self.outbox is not None:
            yield from self._evidence()

    def _weighing(self) -> Iterator[Metric]:
        """Vehicles per lane, suspected, dropped blocks by reason, the plate backlog."""
        unit = self.unit
        lanes = CounterMetricFamily(f"{PREFIX}_vehicles_weighed", "vehicles weighed, by "
                                    "lane (1-based)", labels=["lane"])
        for lane, n in sorted(dict(unit.weighed_by_lane).items()):
            lanes.add_metric([str(lane)], n)
        yield lanes
        yield CounterMetricFamily(f"{PREFIX}_vehicles_suspected", "vehicles screened as "
                                  "suspected overloads", value=unit.stats["suspected"])
        yield CounterMetricFamily(f"{PREFIX}_vehicles_committed", "passes committed (to "
                                  "the outbox when sending)", value=unit.stats["committed"])
        dropped = CounterMetricFamily(f"{PREFIX}_blocks_dropped", "digitiser blocks the "
                                      "signal loop dropped, by reason", labels=["reason"])
        for reason, n in sorted(dict(unit.loop.stats.drop_reasons).items()):
            dropped.add_metric([reason], n)
        yield dropped
        yield CounterMetricFamily(f"{PREFIX}_signal_gaps", "gaps in the digitiser's "
                                  "samples (lost frames)", value=unit.loop.stats.gaps)
        yield GaugeMetricFamily(f"{PREFIX}_plate_backlog", "plate reading jobs waiting "
                                "for a reader (OCR backlog)", value=unit.plates.backlog)

    def _devices(self) -> Iterator[Metric]:
        """Bad frames and connection state of each device."""
        bad = CounterMetricFamily(f"{PREFIX}_bad_frames", "frames a device's framing "
                                  "refused (checksum, length, garbage)", labels=["device"])
        up = GaugeMetricFamily(f"{PREFIX}_device_connected", "1 while the device is "
                               "connected", labels=["device"])
        for name, device in list(self.unit.devices.items()):
            try:
                status = device.get_status()
            except Exception:  # a scrape never stops on one device
                log.exception("device %s: no status for the metrics", name)
                continue
            bad.add_metric([name], status.bad_frames)
            up.add_metric([name], 1.0 if status.connected else 0.0)
        yield bad
        yield up

    def _disk_policy(self, outbox: "Outbox") -> Iterator[Metric]:
        """The outbox's disk alarm and what its disk policy removed or dropped, so a full
        disk shows on a dashboard before anyone reads the unit's log."""
        yield GaugeMetricFamily(f"{PREFIX}_outbox_disk_full", "1 while the outbox's disk "
                                "is full even after removing acknowledged packets (the "
                                "alarm)", value=int(outbox.disk_full))
        yield CounterMetricFamily(f"{PREFIX}_outbox_light_dropped", "light records not "
                                  "stored because the disk was full",
                                  value=outbox.light_dropped)
        pruned = CounterMetricFamily(f"{PREFIX}_outbox_pruned", "acknowledged packets "
                                     "removed from the outbox, by kind", labels=["kind"])
        for kind, count in outbox.pruned.items():
            pruned.add_metric([kind], count)
        yield pruned

    def _evidence(self) -> Iterator[Metric]:
        """The outbox's depth and age, and the sender's counters."""
        link = self.unit.link
        assert link is not None and self.outbox is not None
        pending, oldest_at = self.outbox.cached.get()
        yield GaugeMetricFamily(f"{PREFIX}_outbox_pending", "packets in the outbox not "
                                "yet acknowledged by a center", value=pending)
        yield GaugeMetricFamily(f"{PREFIX}_outbox_oldest_pending_seconds", "age of the "
                                "oldest packet not yet acknowledged (0: none)",
                                value=max(time.time() - oldest_at, 0.0) if oldest_at else 0.0)
        yield GaugeMetricFamily(f"{PREFIX}_outbox_held", "packets held in memory while "
                                "the outbox's disk is full", value=len(link.outbox.held))
        yield CounterMetricFamily(f"{PREFIX}_outbox_lost", "packets dropped from memory "
                                  "because the disk stayed full", value=link.outbox.lost)
        yield from self._disk_policy(link.outbox)
        status = link.sender.status
        yield CounterMetricFamily(f"{PREFIX}_packets_sent", "packets sent (first sends)",
                                  value=status.sent)
        yield CounterMetricFamily(f"{PREFIX}_resends", "packets sent again for want of "
                                  "an ack", value=status.resent)
        yield CounterMetricFamily(f"{PREFIX}_packets_acked", "packets the center "
                                  "acknowledged", value=status.acked)
        yield CounterMetricFamily(f"{PREFIX}_failovers", "moves to the next center "
                                  "endpoint", value=status.failovers)
        refused = CounterMetricFamily(f"{PREFIX}_refusals", "packets the center refused, "
                                      "by its reason", labels=["reason"])
        for reason, n in sorted(dict(status.refused_by).items()):
            refused.add_metric([reason], n)
        yield refused

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()


class UnitMetrics:
    """A unit's registry, its collector, the ack histogram and the HTTP server."""

    def __init__(self, unit: "RoadsideUnit", address: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.collector = UnitCollector(unit)
        self.registry.register(self.collector)
        self.ack_latency = Histogram(f"{PREFIX}_ack_latency_seconds", "time from a "
                                     "packet's only send to its ack", buckets=ACK_BUCKETS_S,
                                     registry=self.registry)
        if unit.link is not None:
            unit.link.sender.on_ack = self.ack_latency.observe
        try:
            self.server = MetricsServer(self.registry, address) if address else None
        except OSError as exc:
            self.collector.close()
            raise ConfigError(f"unit.metrics_address {address}: cannot serve: {exc}"
                              ) from None

    def stop(self) -> None:
        """Stop serving and close the collector's outbox connection."""
        if self.server is not None:
            self.server.stop()
        self.collector.close()
