"""The center's Prometheus metrics (``metrics_address``; docs/metrics.md).

The receiver counts what becomes of each packet as it acknowledges it (ingested,
duplicate, refused by reason): counters of this process, so several receivers on one
database each report their own and Prometheus sums them; the ingest rate is
``rate(zhichao_center_packets_ingested_total[1m])``. The cases awaiting each step of the
procedure, and how old the oldest is, are the database's: read when Prometheus scrapes,
at most once per :data:`CASES_TTL_S` however many servers scrape, so a scrape never adds
more than one small grouped query on the cases' status index.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from center.law_models import CASE_STATUSES, Case
from zhichao.metrics import Cached, MetricsServer

PREFIX = "zhichao_center"
CASES_TTL_S = 10.0
"""The cases table is asked at most this often for the metrics."""
FINISHED = ("closed", "rejected")
"""Case states that await nothing: not reported as a step."""
CaseRows = dict[str, tuple[int, datetime | None]]


class PacketOutcome(Protocol):
    """What the receiver knows of one packet when it acknowledges it
    (:class:`center.ingest.Outcome`)."""

    status: str
    reason: str
    duplicate: bool


def awaiting(engine: Engine) -> CaseRows:
    """Open cases by state: how many, and when the oldest was opened."""
    query = (select(Case.status, func.count(), func.min(Case.created_at))
             .where(Case.status.not_in(FINISHED)).group_by(Case.status))
    with Session(engine) as session:
        return {status: (n, first) for status, n, first in session.execute(query)}


class CasesCollector(Collector):
    """Cases awaiting each step and the age of the oldest, from the database (cached)."""

    def __init__(self, read: Callable[[], CaseRows], ttl_s: float = CASES_TTL_S) -> None:
        self.cached = Cached(read, ttl_s)

    def collect(self) -> Iterator[Metric]:
        rows = self.cached.get()
        now = datetime.now(UTC)
        count = GaugeMetricFamily(f"{PREFIX}_cases_awaiting", "open cases, by the step "
                                  "they are at (their state)", labels=["status"])
        age = GaugeMetricFamily(f"{PREFIX}_cases_oldest_age_seconds", "age of the oldest "
                                "open case at each step, since it was opened (0: none)",
                                labels=["status"])
        for status in (s for s in CASE_STATUSES if s not in FINISHED):
            n, first = rows.get(status, (0, None))
            count.add_metric([status], n)
            age.add_metric([status], _age_s(now, first))
        yield count
        yield age


def _age_s(now: datetime, then: datetime | None) -> float:
    """Seconds from ``then`` to ``now`` (a naive time is UTC, as SQLite returns it)."""
    if then is None:
        return 0.0
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max((now - then).total_seconds(), 0.0)


class HandshakesCollector(Collector):
    """CURVE handshakes refused (a key no enrolled device has), summed over receivers."""

    def __init__(self) -> None:
        self.receivers: list = []

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(f"{PREFIX}_handshakes_refused", "connections refused "
                                  "at the CURVE handshake (key not enrolled)",
                                  value=sum(r.allow.refused for r in list(self.receivers)))


class CenterMetrics:
    """A center's registry: the receiver's counters, the cases' gauges, the server."""

    def __init__(self, engine: Engine, address: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.ingested = Counter(f"{PREFIX}_packets_ingested", "packets stored (the "
                                "first copy of each)", registry=self.registry)
        self.duplicates = Counter(f"{PREFIX}_packets_duplicate", "copies of packets "
                                  "stored before (resends), acknowledged again",
                                  registry=self.registry)
        self.refusals = Counter(f"{PREFIX}_refusals", "packets refused, by reason",
                                ["reason"], registry=self.registry)
        self.handshakes = HandshakesCollector()
        self.registry.register(self.handshakes)
        self.registry.register(CasesCollector(lambda: awaiting(engine)))
        self.server = MetricsServer(self.registry, address) if address else None

    def outcome(self, o: PacketOutcome) -> None:
        """Count one packet the receiver is acknowledging."""
        if o.status == "refused":
            self.refusals.labels(o.reason or "unknown").inc()
        elif o.duplicate:
            self.duplicates.inc()
        else:
            self.ingested.inc()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
