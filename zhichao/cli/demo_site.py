"""A whole site on the real path, each part its own process: ``zhichao sim`` (the twins),
``zhichao center run`` (the center on SQLite) and ``zhichao edge run --send`` (the
roadside unit), as a technician and the center's staff would start them.

:class:`RealPathSite` prepares a folder — keys for the unit and the center, the center's
settings, the device registry (the unit announced, signed and certified), the unit
enrolled — starts the three processes, waits for the unit's run to end and the center to
turn what it received into cases, and then reads the center's database against the
simulation's truth (:func:`score_cases`). ``zhichao demo``, the real-path test and
``benchmarks/latency.py`` all run it.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
import zmq
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import overload
from calibration.chain import Certificate, Chain, save_chain
from center.db import make_engine
from center.ingest_models import StoredPacket
from center.law_models import Capture, Case, CaseCapture
from center.web.auth import set_password
from evidence.keys import make_keys
from sim.site import LEAD_S
from zhichao.errors import ZhichaoError

DEVICE_ID = "sim-site"
SITE = "G60 沪昆高速 K123+450"
CERTIFICATE = "JD-DEMO-001"
START_TIMEOUT_S = 30.0
EDGE_TAIL_S = 6.0
"""The unit runs this much longer than the traffic (it starts a little after the twins'
clock, and its last vehicles need their frames and plates)."""
CENTER_CATCH_UP_S = 120.0
"""How long, once the unit's run has ended, the center is given to process what it
stored: the plates the unit left unread are read there, which on a busy machine takes
a while."""


STAFF = (("ZF001", "张三", "reviewer"), ("ZF002", "李四", "reviewer"),
         ("FS001", "赵六", "legal_reviewer"), ("ADM01", "王芳", "administrator"))
"""The demo center's staff register: two reviewers (a case needs two officers), a legal
reviewer and an administrator."""


def staff_csv(today: date) -> str:
    """The staff register of the demo center, valid from a year back for two years."""
    since, until = (today - timedelta(days=365)).isoformat(), \
        (today + timedelta(days=730)).isoformat()
    rows = [f"{oid},{name},{'' if role == 'administrator' else f'浙DEMO{i:04d}'},{role},"
            f"true,{since},{until}" for i, (oid, name, role) in enumerate(STAFF, start=1)]
    return "officer_id,name,credential_number,roles,active,valid_from,valid_to\n" \
        + "\n".join(rows) + "\n"


def demo_chain(today: date) -> Chain:
    """The simulated unit's calibration: its strips are as specified (no stage corrects
    anything), verified under the registry's certificate and dates."""
    return Chain(device_id=DEVICE_ID, version="demo-verified", stages=[],
                 certificate=Certificate(number=CERTIFICATE,
                                         valid_from=today - timedelta(days=100),
                                         valid_to=today + timedelta(days=265),
                                         issuer="simulated metrology institute"),
                 applied_by="demo", note="the simulated strips need no correction")


class SiteError(ZhichaoError):
    """A process of the site did not start or ended badly; its log is named."""


def registry_csv(today: date) -> str:
    """The registry of the site's one unit: reviewed, certified, signed, announced and in
    enforcement since well before today."""
    header = ("device_id,road,stake,direction,latitude,longitude,review_date,"
              "certificate_number,accuracy_class,certificate_valid_from,certificate_valid_to,"
              "signs_installed,notice_date,notice_document,notice_url,enforcement_start,"
              "active,suspensions")
    d = {k: (today - timedelta(days=n)).isoformat()
         for k, n in (("review", 120), ("cert", 100), ("signs", 90), ("notice", 80),
                      ("start", 60))}
    valid_to = (today + timedelta(days=265)).isoformat()
    row = (f"{DEVICE_ID},G60 沪昆高速,K123+450,上行 (east),30.2500,120.1600,{d['review']},"
           f"{CERTIFICATE},5,{d['cert']},{valid_to},{d['signs']},{d['notice']},"
           f"浙交〔2026〕1号,,{d['start']},true,")
    return f"{header}\n{row}\n"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with zmq.Context.instance().socket(zmq.ROUTER) as probe:
        return probe.bind_to_random_port("tcp://127.0.0.1")


def cli(*args: str) -> list[str]:
    """The command line of ``zhichao ARGS`` with this interpreter."""
    return [sys.executable, "-m", "zhichao.cli", *args]


@dataclass
class RealPathSite:
    """One simulated site, its roadside unit and its center, in ``folder``."""

    folder: Path
    seconds: float = 60.0
    seed: int = 7
    lanes: int = 2
    plate_workers: int = 1
    plate_queue: int = 16
    plate_nice: int = 5
    process_interval_s: float = 0.5
    flow: float = 720.0
    overloaded_share: float = 0.3
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    """The staff's web log-in passwords, made for this run (shown once, never stored but
    as argon2 hashes)."""

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.center_db = self.folder / "center.db"
        self.port = 0

    def log(self, name: str) -> Path:
        """Where a process of the site writes its output."""
        return self.folder / f"{name}.log"

    # -- before --------------------------------------------------------------------------

    def prepare(self) -> None:
        """Keys, the center's settings, its registry, its staff with their web passwords
        and the unit's enrolment."""
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = self.folder / "keys"
        if not (keys / "center.key").exists():
            make_keys(keys, "center", curve_only=True)
            make_keys(keys, DEVICE_ID)
        self.port = free_port()
        (self.folder / "center.yaml").write_text(yaml.safe_dump({
            "database": str(self.center_db), "images_dir": "images",
            "receiver": {"listen": [f"tcp://127.0.0.1:{self.port}"],
                         "server_secret_key": "keys/center.key_secret"},
            "law": {"process_interval_s": self.process_interval_s}}), encoding="utf-8")
        registry = self.folder / "registry.csv"
        registry.write_text(registry_csv(datetime.now(UTC).date()), encoding="utf-8")
        center = str(self.folder / "center.yaml")
        self._call("registry", "center", "devices", "import", str(registry), "--config", center)
        self._call("enrol", "center", "devices", "enrol", "--config", center, "--id",
                   DEVICE_ID, "--sign-key", str(keys / f"{DEVICE_ID}.sign.pub"),
                   "--curve-key", str(keys / f"{DEVICE_ID}.key"), "--replace")
        staff = self.folder / "staff.csv"
        staff.write_text(staff_csv(datetime.now(UTC).date()), encoding="utf-8")
        self._call("staff", "center", "staff", "import", str(staff), "--config", center)
        self.set_passwords()

    def set_passwords(self) -> None:
        """A new random web password for each officer of the demo's staff (in this process:
        what ``zhichao center staff password`` does, without four start-ups)."""
        self.passwords = {oid: secrets.token_urlsafe(9) for oid, _, _ in STAFF}
        engine = make_engine(str(self.center_db))
        try:
            with Session(engine) as session, session.begin():
                for officer, password in self.passwords.items():
                    set_password(session, officer, password)
        finally:
            engine.dispose()

    def _call(self, name: str, *args: str) -> None:
        with self.log(name).open("w", encoding="utf-8") as out:
            done = subprocess.run(cli(*args), stdout=out, stderr=subprocess.STDOUT,
                                  timeout=120, check=False)
        if done.returncode != 0:
            raise SiteError(f"zhichao {' '.join(args[:3])} failed: see {self.log(name)}")

    # -- during --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the twins, the center and the unit, each its own process."""
        site_yaml = self.folder / "site.yaml"
        site_yaml.unlink(missing_ok=True)
        self._spawn("sim", "sim", "--seconds", str(self.seconds), "--seed", str(self.seed),
                    "--lanes", str(self.lanes), "--write-config", str(site_yaml),
                    "--truth", str(self.folder / "truth.json"), "--flow", str(self.flow),
                    "--overloaded-share", str(self.overloaded_share))
        self._spawn("center", "center", "run", "--config", str(self.folder / "center.yaml"))
        self._wait_for(site_yaml, "sim")
        edge = yaml.safe_load(site_yaml.read_text(encoding="utf-8"))
        edge["device_id"] = DEVICE_ID
        edge["plates"] = {"workers": self.plate_workers, "queue": self.plate_queue,
                          "nice": self.plate_nice}
        edge["evidence"] = {
            "site": SITE, "direction": "east", "certificate": CERTIFICATE,
            "outbox": "outbox.db", "signing_key": f"keys/{DEVICE_ID}.sign",
            "curve_secret_key": f"keys/{DEVICE_ID}.key_secret",
            "center_public_key": "keys/center.key",
            "endpoints": [f"tcp://127.0.0.1:{self.port}"]}
        edge["calibration_file"] = "calibration.json"
        save_chain(demo_chain(datetime.now(UTC).date()), self.folder / "calibration.json")
        (self.folder / "edge.yaml").write_text(yaml.safe_dump(edge, allow_unicode=True),
                                               encoding="utf-8")
        self._spawn("edge", "edge", "run", "--config", str(self.folder / "edge.yaml"),
                    "--send", "--json", "--seconds",
                    str(self.seconds + LEAD_S + EDGE_TAIL_S))

    def _spawn(self, name: str, *args: str) -> None:
        out = self.log(name).open("w", encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.procs[name] = subprocess.Popen(cli(*args), stdout=out, stderr=subprocess.STDOUT,
                                            env=env, start_new_session=True)
        out.close()

    def _wait_for(self, path: Path, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not path.exists():
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise SiteError(f"zhichao {name} did not start: see {self.log(name)}")
            time.sleep(0.1)

    def finish(self, settle_s: float = CENTER_CATCH_UP_S,
               tick: Callable[[float, int], None] | None = None,
               waiting: Callable[[int], None] | None = None) -> int:
        """Wait for the unit's run to end (``tick(seconds, passes)`` every half second),
        then for the center to turn every packet it stored into a capture and its case
        (``waiting(packets left)`` while it does; at most ``settle_s``), then stop
        everything. Returns how many stored packets the center had not processed: they
        stay stored, and its next start processes them."""
        started = time.monotonic()
        try:
            edge = self.procs["edge"]
            deadline = started + self.seconds + LEAD_S + EDGE_TAIL_S + 60.0
            while edge.poll() is None and time.monotonic() < deadline:
                if tick is not None:
                    tick(time.monotonic() - started, self.committed())
                time.sleep(0.5)
            if edge.poll() is None:
                raise SiteError(f"zhichao edge run did not end: see {self.log('edge')}")
            until = time.monotonic() + settle_s
            while (left := self.pending_packets()) > 0 and time.monotonic() < until:
                if waiting is not None:
                    waiting(left)
                time.sleep(0.2)
        finally:
            self.stop()
        if self.procs["edge"].returncode != 0:
            raise SiteError(f"zhichao edge run ended with {self.procs['edge'].returncode}: "
                            f"see {self.log('edge')}")
        return left

    def committed(self) -> int:
        """Passes the unit has committed so far (its JSON lines)."""
        with self.log("edge").open(encoding="utf-8") as f:
            return sum(1 for line in f if line.startswith('{"source"'))

    def stop(self) -> None:
        """SIGTERM every process still running, then SIGKILL what does not end."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def pending_packets(self) -> int:
        """Packets the center stored and has not yet turned into captures."""
        engine = make_engine(str(self.center_db))
        try:
            with Session(engine) as session:
                stored = session.scalar(select(func.count()).select_from(StoredPacket)) or 0
                done = session.scalar(select(func.count()).select_from(Capture)) or 0
        finally:
            engine.dispose()
        return stored - done

    # -- after ---------------------------------------------------------------------------

    def edge_passes(self) -> list[dict[str, Any]]:
        """The unit's committed passes, as ``edge run --json`` printed them."""
        rows = [json.loads(line) for line in
                self.log("edge").read_text(encoding="utf-8").splitlines()
                if line.startswith("{")]
        return [r for r in rows if "source" in r]

    def edge_summary(self) -> dict[str, Any]:
        """The unit's closing counts (the last JSON line of ``edge run --json``)."""
        for line in reversed(self.log("edge").read_text(encoding="utf-8").splitlines()):
            if line.startswith('{"summary"'):
                return json.loads(line)["summary"]
        return {}

    def truth(self) -> list[dict[str, Any]]:
        """What really passed (``zhichao sim --truth``)."""
        return json.loads((self.folder / "truth.json").read_text(encoding="utf-8"))

    def score(self, margin: float = 0.0) -> "CaseScore":
        """The center's cases against the truth (see :func:`score_cases`)."""
        engine = make_engine(str(self.center_db))
        try:
            with Session(engine) as session:
                cases = [{"id": c.id, "plate": c.plate, "status": c.status,
                          "sequences": [s for (s,) in session.execute(
                              select(Capture.sequence).join(
                                  CaseCapture, CaseCapture.capture_id == Capture.id)
                              .where(CaseCapture.case_id == c.id))]}
                         for c in session.scalars(select(Case))]
        finally:
            engine.dispose()
        return score_cases(self.truth(), self.edge_passes(), cases, margin)


MATCH_S = 0.5
"""A pass and a simulated vehicle of one lane are the same when their first axles are
this close in time (vehicles of a lane are at least a second apart)."""


@dataclass(frozen=True)
class CaseScore:
    """How many of the simulated overloaded trucks — driven normally and weighed without
    a quality flag — became evidential cases with their own plate, and how many cases
    carry the plate of no overloaded truck. ``margin`` is the share of the limit a truck
    must be over by to count (0: every truck over the limit; a weighing within its
    accuracy may put one that is barely over under the limit)."""

    margin: float
    overloaded: list[str]       # plates of the trucks scored
    with_case: list[str]        # ... of those, in a case of their plate opened from them
    missed: list[str]
    flagged: int                # overloaded trucks left out: their pass was flagged
    weighed_under: list[str]    # overloaded trucks the unit weighed within the limit
    not_weighed: list[str]      # overloaded trucks no pass matches
    wrong_plate_cases: list[str]  # cases whose plate is not that of their vehicle
    weighed_over: list[str]     # cases of trucks not over the limit, weighed over it
    cases: int

    @property
    def share(self) -> float:
        """Share of the overloaded trucks that became cases."""
        return len(self.with_case) / len(self.overloaded) if self.overloaded else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "overloaded_trucks": len(self.overloaded),
                "became_cases": len(self.with_case), "share": round(self.share, 4),
                "missed": self.missed, "flagged_left_out": self.flagged,
                "weighed_under": self.weighed_under,
                "not_weighed": self.not_weighed, "wrong_plate_cases": self.wrong_plate_cases,
                "weighed_over": self.weighed_over,
                "cases": self.cases}


def truth_over(truth: list[dict[str, Any]], margin: float = 0.0,
               benchmark: str = "national") -> list[dict[str, Any]]:
    """The simulated trucks whose true gross weight is over the limit by more than
    ``margin`` of it, driven normally (no bad driving to flag)."""
    rules = overload.load_rules()
    out = []
    for v in truth:
        if v["bad"] or v["is_car"]:
            continue
        try:
            g = overload.grade(v["code"], v["gross_kg"], rules, benchmark=benchmark,
                               tyres=v["tyres"])
        except overload.RuleError:
            continue
        if g.excess_kg > margin * g.limit_kg:
            out.append(v)
    return out


def match_pass(v: dict[str, Any], passes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The unit's pass of simulated vehicle ``v``, by lane and first-axle time."""
    near = [p for p in passes if p["lane"] == v["lane"]
            and abs(p["times"]["first_axle"] - v["t0_mono_s"]) < MATCH_S]
    return min(near, key=lambda p: abs(p["times"]["first_axle"] - v["t0_mono_s"]),
               default=None)


def unaccounted(truth: list[dict[str, Any]], passes: list[dict[str, Any]]) -> list[str]:
    """Simulated vehicles the unit lost: no pass of theirs, or a pass they share with
    another vehicle without the pass saying so (the flag ``merged``)."""
    shared: dict[int, list[dict[str, Any]]] = {}
    lost = []
    for v in truth:
        p = match_pass(v, passes)
        if p is None:
            lost.append(f"{v['plate']} (lane {v['lane']}, {v['t0_s']:.1f} s): no pass")
        else:
            shared.setdefault(id(p), []).append(v)
    by_id = {id(p): p for p in passes}
    for key, vs in shared.items():
        if len(vs) > 1 and "merged" not in by_id[key]["flags"]:
            lost += [f"{v['plate']} (lane {v['lane']}, {v['t0_s']:.1f} s): in a pass of "
                     f"{len(vs)} vehicles not flagged merged" for v in vs]
    return lost


def score_cases(truth: list[dict[str, Any]], passes: list[dict[str, Any]],
                cases: list[dict[str, Any]], margin: float = 0.0) -> CaseScore:
    """Score the center's cases against the truth (see :class:`CaseScore`). Trucks the
    unit weighed within the limit are listed apart (``weighed_under``: the weighing's
    error, not the evidence path's) and counted as misses only with ``margin`` above 0."""
    case_plates = {c["plate"] for c in cases if c["plate"]}
    over_plates = {v["plate"] for v in truth_over(truth)}
    own = {(c["plate"], s) for c in cases for s in c.get("sequences", [])}
    scored: list[tuple[str, int | None]] = []
    flagged, lost, under = 0, [], []
    for v in truth_over(truth, margin):
        p = match_pass(v, passes)
        if p is None:
            lost.append(v["plate"])
        elif p["flags"]:
            flagged += 1
        elif not p["suspected"] and margin == 0:
            under.append(v["plate"])
        else:
            scored.append((v["plate"], p["sequence"]))
    scored += [(plate, None) for plate in lost]  # not weighed: a miss, not an exclusion
    return CaseScore(margin=margin, overloaded=[plate for plate, _ in scored],
                     with_case=[plate for plate, seq in scored if (plate, seq) in own],
                     missed=[plate for plate, seq in scored if (plate, seq) not in own],
                     flagged=flagged, weighed_under=under, not_weighed=lost,
                     wrong_plate_cases=wrong_plates(truth, passes, cases),
                     weighed_over=sorted(case_plates - over_plates), cases=len(cases))


def wrong_plates(truth: list[dict[str, Any]], passes: list[dict[str, Any]],
                 cases: list[dict[str, Any]]) -> list[str]:
    """Cases whose plate is not the plate of a vehicle they were opened from (each
    capture's pass, by its sequence, matched to the simulated vehicle it weighed)."""
    by_sequence = {p["sequence"]: p for p in passes if p.get("sequence") is not None}
    by_pass = {}
    for v in truth:
        p = match_pass(v, passes)
        if p is not None:
            by_pass[p["sequence"]] = v["plate"]
    wrong = []
    for c in cases:
        plates = {by_pass.get(s) for s in c.get("sequences", []) if s in by_sequence}
        if c["plate"] not in plates:
            wrong.append(f"{c['plate']} (vehicles: {', '.join(sorted(map(str, plates)))})")
    return wrong
