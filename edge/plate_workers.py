"""Plates read beside the weighing: worker processes behind a bounded queue.

The weighing loop hands each vehicle's camera frames to :meth:`PlateWorkers.submit`,
which never waits: the job joins a queue of at most ``queue`` jobs, suspected overloads
ahead of light records. When the queue is full a light record's job makes room for a
suspected overload's; a job that finds no room is refused at once and its vehicle is
committed with its plate marked unread (the center reads it from the images). Results come
back through :meth:`PlateWorkers.results`, polled by the loop.

Why processes, not threads: the reader's Python parts (candidate search, decoding, the
vote) hold the interpreter lock for tens of milliseconds per frame, which a thread would
take from the weighing. Each worker loads its own reader once (the models ship inside an
installed package; nothing is downloaded) and is started with ``spawn``, so it inherits
none of the unit's threads or sockets. A worker that dies is started again, and the job
it held is answered as unread.
"""

import heapq
import itertools
import logging
import multiprocessing as mp
import os
import queue
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

STOP_JOIN_S = 3.0
MAX_RESTARTS = 5
"""Workers started again after dying; past this the unit reads no more plates itself
(a reader that cannot start — a broken install — would otherwise be restarted forever) and
every plate goes to the center unread."""


class PlateSettings(BaseModel):
    """How a unit reads plates: how many workers, how long a queue, how many frames."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["onnx", "paddle"] = Field("onnx", description="plate engine (onnx: "
                                              "the same readings as paddle in 0.4× the time)")
    workers: int = Field(1, ge=0, le=8, description="reader processes; 0 reads no plate at "
                         "the edge (every plate is left to the center). One keeps a core "
                         "for the weighing on a two-core cabinet PC")
    queue: int = Field(16, ge=1, le=1000, description="vehicles waiting for a reader; "
                       "beyond, light records' jobs are dropped first, then new jobs refused")
    frames: int = Field(5, ge=1, le=25, description="frames per camera read and voted on, "
                        "centred on the wanted moment: one frame misreads a character now "
                        "and then; a majority of five rarely does")
    agree: int = Field(2, ge=1, le=25, description="frames of one camera are read, nearest "
                       "the wanted moment first, until this many read the same text: two "
                       "agreeing frames rarely share a misreading, and reading stops there")
    min_vote_share: float = Field(0.5, ge=0, le=1, description="a vehicle's plate counts "
                                  "only when at least this share of its frames read the "
                                  "winning text: on simulated frames wrong plates won with 1 "
                                  "or 2 votes of 5, right ones with 3 to 5")
    detector_side: int = Field(640, ge=0, le=4096, description="longer side (px) the text "
                               "detector sees a frame's region of interest at "
                               "(ReaderOptions.detector_side): a lane's region is a few "
                               "hundred pixels, and upscaling it to 1 120 only costs time")
    wait_s: float = Field(4.0, gt=0, le=120, description="longest wait for a vehicle's "
                          "plate before it is committed unread (the center reads it)")
    read_light: bool = Field(True, description="also read the plates of vehicles within "
                             "the limit, when the queue has room (traffic statistics)")
    min_confidence: float = Field(0.3, ge=0, le=1, description="the reader's floor on a "
                                  "plate serial's likelihood (ReaderOptions.min_confidence)")
    nice: int = Field(5, ge=0, le=19, description="workers run this much below the "
                      "weighing's priority, so a busy reader yields the CPU to it")
    second_look: bool = Field(False, description="a frame in which nothing was read is "
                              "looked at once more in more light (dusk, night, headlight "
                              "glare; ReaderOptions.second_look). Off by default: on the "
                              "simulated real path it once gave a wrong plate that became "
                              "a case (黑V78181 for 黑N78Y81); a wrong plate is worse than "
                              "a plate left to the center")


@dataclass(frozen=True)
class PlateJob:
    """One vehicle's frames to read: front and rear, each already cut to its camera's
    region of interest."""

    key: int
    front: list[np.ndarray]
    rear: list[np.ndarray]
    suspected: bool


@dataclass(frozen=True)
class PlateResult:
    """What the reader made of one vehicle: the plate fields a packet carries, or why
    there is none. ``status``: ``read``, ``unreadable`` (the frames show no plate it
    trusts) or ``unread`` (no reader got to it)."""

    key: int
    status: Literal["read", "unreadable", "unread"]
    text: str = ""
    colour: str = "unknown"
    confidence: float = 0.0
    province_confidence: float | None = None
    front_rear: str | None = None
    image: str | None = None
    box: list[float] = field(default_factory=lambda: [0.0] * 5)
    votes: int = 0
    frames: int = 0
    seconds: float = 0.0
    reason: str = ""


def read_job(reader: object, job: PlateJob, settings: PlateSettings) -> PlateResult:
    """Vote the front frames and the rear frames apart, compare them, and keep the plate
    only when its vote share holds (``reader`` is a :class:`plates.PlateReader`)."""
    from plates.reader import compare_front_rear  # noqa: PLC0415 (loaded in workers only)

    t0 = time.perf_counter()
    front = read_until_agreed(reader, job.front, settings.agree)
    rear = read_until_agreed(reader, job.rear, settings.agree)
    front_ok = _trusted(front, settings)
    rear_ok = _trusted(rear, settings)
    if not front_ok and not rear_ok:
        seen = [v.text for v in (front, rear) if v.text]
        return PlateResult(job.key, "unreadable", frames=front.frames + rear.frames,
                           seconds=time.perf_counter() - t0,
                           reason="no plate read by a majority of frames"
                           + (f" (seen: {', '.join(seen)})" if seen else ""))
    chosen, role = (front, "front") if front_ok else (rear, "rear")
    if front_ok and rear_ok:
        compared = compare_front_rear(front, [[rear.reading]]).status
    elif job.front and job.rear:
        compared = "front only" if front_ok else "rear only"
    else:
        compared = None
    r = chosen.reading
    return PlateResult(job.key, "read", text=r.text, colour=r.colour,
                       confidence=round(float(r.confidence), 4),
                       province_confidence=round(float(r.province_confidence), 4),
                       front_rear=compared, image=role,
                       box=[round(float(x), 1) for x in r.box.as_list()], votes=chosen.votes,
                       frames=chosen.frames, seconds=time.perf_counter() - t0)


def read_until_agreed(reader: object, frames: list[np.ndarray], agree: int) -> object:
    """Read the frames nearest first and vote; stop once ``agree`` frames have read the
    same text (the rest would only confirm it: most vehicles need two frames, not five).
    A :class:`plates.VehicleReading`."""
    from plates.reader import vote  # noqa: PLC0415 (loaded in workers only)

    best, seen = [], 0
    for frame in frames:
        seen += 1
        readings = reader.read(frame)  # type: ignore[attr-defined]
        if readings:
            best.append(readings[0])
            if sum(r.text == readings[0].text for r in best) >= agree:
                break
    return vote(best, seen)


def _trusted(reading: object, settings: PlateSettings) -> bool:
    """A vehicle reading with a text that enough of its frames agree on."""
    return (reading.text is not None  # type: ignore[attr-defined]
            and reading.votes >= settings.min_vote_share * reading.frames)  # type: ignore[attr-defined]


def _worker(jobs: mp.Queue, results: mp.Queue, settings: PlateSettings) -> None:
    """A reader process: load once, then read jobs until told to stop (``None``)."""
    os.nice(settings.nice)
    from plates.engines import load_engine  # noqa: PLC0415 (heavy: in the worker only)
    from plates.reader import PlateReader, ReaderOptions  # noqa: PLC0415

    reader = PlateReader(load_engine(settings.engine),
                         options=ReaderOptions(min_confidence=settings.min_confidence,
                                               detector_side=settings.detector_side,
                                               second_look=settings.second_look))
    results.put(("ready", os.getpid()))
    while (job := jobs.get()) is not None:
        try:
            results.put(read_job(reader, job, settings))
        except Exception as exc:  # one bad job must not end the worker
            results.put(PlateResult(job.key, "unreadable", reason=f"reader failed: {exc}"))


class PlateWorkers:
    """A pool of reader processes fed from a bounded priority queue."""

    def __init__(self, settings: PlateSettings | None = None):
        self.settings = settings or PlateSettings()
        self._ctx = mp.get_context("spawn")
        self._jobs: mp.Queue = self._ctx.Queue()
        self._results: mp.Queue = self._ctx.Queue()
        # A job still in the queue's pipe when the unit ends (its reader stopped, killed or
        # never started) is answered unread by stop(); without this, the interpreter's exit
        # would wait forever for the pipe to take a frame nobody reads.
        self._jobs.cancel_join_thread()
        self._procs: list[mp.process.BaseProcess] = []
        self._waiting: list[tuple[int, int, PlateJob]] = []   # (priority, order, job)
        self._order = itertools.count()
        self._in_flight: dict[int, PlateJob] = {}
        self._answered: list[PlateResult] = []
        self._stopping = False
        self.ready = 0
        self.counts = {"submitted": 0, "read": 0, "unreadable": 0, "refused": 0,
                       "dropped": 0, "restarted": 0}

    def start(self) -> None:
        """Start the reader processes (they load their models in the background)."""
        for _ in range(self.settings.workers):
            self._spawn()

    def _spawn(self) -> None:
        proc = self._ctx.Process(target=_worker, name="plate-reader", daemon=True,
                                 args=(self._jobs, self._results, self.settings))
        proc.start()
        self._procs.append(proc)

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until every worker has loaded its reader (a second or two), so the first
        vehicles are not left unread while the models load; False at the timeout."""
        deadline = time.monotonic() + timeout_s
        while self.ready < len(self._procs) and time.monotonic() < deadline:
            self._answered += self.results()
            time.sleep(0.05)
        return self.ready >= len(self._procs)

    @property
    def backlog(self) -> int:
        """Jobs waiting or being read."""
        return len(self._waiting) + len(self._in_flight)

    def submit(self, job: PlateJob) -> bool:
        """Queue a job without waiting; False when it was refused (no room, no reader, or
        a light record when light plates are not read)."""
        self.counts["submitted"] += 1
        if not self._procs or (not job.suspected and not self.settings.read_light):
            self._refuse(job, "no plate reader at the edge" if not self._procs
                         else "light records' plates are not read")
            return False
        if len(self._waiting) >= self.settings.queue:
            worst = max(self._waiting)
            if job.suspected and worst[0] == 1:
                self._waiting.remove(worst)
                heapq.heapify(self._waiting)
                self.counts["dropped"] += 1
                self._refuse(worst[2], "made room for a suspected overload", count=False)
            else:
                self._refuse(job, f"plate queue full ({self.settings.queue} waiting)")
                return False
        heapq.heappush(self._waiting, (0 if job.suspected else 1, next(self._order), job))
        self._feed()
        return True

    def _refuse(self, job: PlateJob, reason: str, count: bool = True) -> None:
        if count:
            self.counts["refused"] += 1
        self._answered.append(PlateResult(job.key, "unread", reason=reason))

    def _feed(self) -> None:
        """Hand jobs to the workers, no more than one each at a time, so priorities
        still decide while they are busy."""
        while self._waiting and len(self._in_flight) < max(1, len(self._procs)):
            _, _, job = heapq.heappop(self._waiting)
            self._in_flight[job.key] = job
            self._jobs.put(job)

    def results(self) -> list[PlateResult]:
        """Results that arrived since the last call (never waits)."""
        out, self._answered = self._answered, []
        while True:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, tuple):
                self.ready += 1
                continue
            if self._in_flight.pop(item.key, None) is not None:
                self.counts[item.status if item.status != "unread" else "refused"] += 1
                out.append(item)
        out += self._restart_dead()
        self._feed()
        return out

    def _restart_dead(self) -> list[PlateResult]:
        """Start a new worker for each that died; the jobs in flight then are answered
        unread (which one a dead worker held is not known, so all are)."""
        dead = [p for p in self._procs if not p.is_alive()]
        if not dead or self._stopping:
            return []
        for proc in dead:
            self._procs.remove(proc)
            if self.counts["restarted"] >= MAX_RESTARTS:
                log.error("plate reader %s ended (exit code %s); %d restarts already: plates "
                          "are left to the center", proc.pid, proc.exitcode, MAX_RESTARTS)
                continue
            log.error("plate reader %s ended (exit code %s); starting another",
                      proc.pid, proc.exitcode)
            self.counts["restarted"] += 1
            self._spawn()
        lost = [PlateResult(k, "unread", reason="the plate reader stopped")
                for k in self._in_flight]
        self._in_flight.clear()
        return lost

    def stop(self) -> list[PlateResult]:
        """Stop the workers; every job not answered comes back unread."""
        self._stopping = True
        for _ in self._procs:
            self._jobs.put(None)
        deadline = time.monotonic() + STOP_JOIN_S
        for proc in self._procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        left = self.results() if self._procs else []
        left += [PlateResult(k, "unread", reason="the unit stopped")
                 for k in self._in_flight]
        left += [PlateResult(j.key, "unread", reason="the unit stopped")
                 for _, _, j in self._waiting]
        self._in_flight.clear()
        self._waiting.clear()
        self._procs.clear()
        return left
