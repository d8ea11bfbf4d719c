"""Benchmark of the device registry: import ``--devices`` devices and list them, on SQLite
and, given ``--pg URL`` or ZHICHAO_TEST_PG, PostgreSQL.

Import: a registry CSV of N devices (every tenth with a suspension) imported by
``center.registry.import_registry`` into a new database, then imported again (every
device updated). Baseline: a plain executemany of the same rows, already split into
cells, into a bare table of as many text columns on the same database, timed in the
same run; the ratio is what reading, decoding, validating and upserting cost on top.
List: one page of ``--page-rows`` devices from the middle, and every device read a page
at a time (what ``devices list --json`` does). And the whole command, ``zhichao center
devices import`` on a new database: start-up and migrations included.

Best of ``--repeat`` rounds, each on a new database (this machine is noisy: the ratio
of the two minima holds where absolute times drift). The command runs once. Every step
runs in a child process of its own, and its peak memory is the child's
maximum resident set (``os.wait4``); the ``setup`` child (modules, engine, migrations,
nothing imported) gives the floor under every figure.

    python benchmarks/registry.py                  # a table
    python benchmarks/registry.py --json --pg postgresql://postgres@127.0.0.1:5432/postgres
"""

import sys
from pathlib import Path

# Run as a file, this folder comes first on sys.path, and benchmarks/signal.py would stand
# in for the standard library's `signal` module: take the folder off before importing.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.timing

import argparse
import csv
import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable

from rich.console import Console

from benchmarks.timing import report

CLI = "import sys; from zhichao.cli import main; sys.exit(main(sys.argv[1:]))"
"""The command line, as the ``zhichao`` script runs it."""
HEADER = ("device_id,road,stake,direction,latitude,longitude,review_date,certificate_number,"
          "accuracy_class,certificate_valid_from,certificate_valid_to,signs_installed,"
          "notice_date,notice_document,notice_url,enforcement_start,active,suspensions")


def write_registry(path: Path, devices: int) -> None:
    """A registry CSV of ``devices`` devices, every tenth suspended for four days."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER + "\n")
        for i in range(devices):
            stop = "2026-05-30..2026-06-02 sensor repair" if i % 10 == 0 else ""
            f.write(f"G60-{i:06d},G60 沪昆高速,K{i // 10}+{i % 10}00,上行,30.25,120.16,"
                    f"2026-01-10,JD-2026-{i:06d},5,2026-01-15,2027-01-14,2026-01-20,"
                    f"2026-02-01,浙交〔2026〕1号,https://example.gov.cn/notice/{i},"
                    f"2026-03-01,true,{stop}\n")


# ---- the children: one step each, its seconds as JSON on stdout ----

def _engine(url: str):
    from center.db import make_engine, upgrade  # noqa: PLC0415 (in the child only)

    engine = make_engine(url)
    upgrade(engine)
    return engine


def child(step: str, url: str, file: Path, page_rows: int) -> float:
    """Run one step in this process; its wall time, s (set-up not included)."""
    from sqlalchemy.orm import Session  # noqa: PLC0415

    from center.registry import (  # noqa: PLC0415
        count_devices,
        import_registry,
        iter_devices,
        list_devices,
        shipped_accuracy_classes,
    )

    engine = _engine(url)
    shipped_accuracy_classes()
    t = time.perf_counter()
    if step == "import":
        with Session(engine) as session, session.begin():
            import_registry(session, file)
    elif step == "baseline":
        with file.open(encoding="utf-8", newline="") as f:
            rows = [tuple(r) for r in csv.reader(f)][1:]
        columns = HEADER.split(",")
        t = time.perf_counter()
        with engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            marks = ", ".join(["?" if engine.dialect.name == "sqlite" else "%s"] * len(columns))
            cursor.execute(f"CREATE TABLE plain ({', '.join(c + ' TEXT' for c in columns)})")
            cursor.executemany(f"INSERT INTO plain VALUES ({marks})", rows)
    elif step == "page":
        with Session(engine) as session:
            offset = count_devices(session) // 2
            t = time.perf_counter()
            page = list_devices(session, limit=page_rows, offset=offset)
            assert len(page) == page_rows, len(page)
    elif step == "all":
        with Session(engine) as session, open(os.devnull, "w") as out:
            for record, stops in iter_devices(session):
                out.write(f"{record.device_id} {len(stops)}\n")
    elif step != "setup":
        raise SystemExit(f"unknown step {step!r}")
    seconds = time.perf_counter() - t
    engine.dispose()
    return seconds


def run_child(args: list[str]) -> tuple[float, float]:
    """Run a child; its seconds (as it timed itself, or its wall time for a command) and
    its peak resident memory, MB."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        process = subprocess.Popen(args, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # the child's own resource usage
        wall = time.perf_counter() - t
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(args[2:])} failed:\n"
                             f"{err.read().decode(errors='replace')}")
        lines = out.read().decode().strip().splitlines()
    seconds = json.loads(lines[-1])["s"] if lines and lines[-1].startswith("{\"s\"") else wall
    return seconds, usage.ru_maxrss / 1024


def measure(url: str, name: str, file: Path, args: argparse.Namespace) -> dict:
    """Every figure of one database."""
    me = [sys.executable, str(Path(__file__).resolve())]

    def step(what: str) -> tuple[float, float]:
        return run_child([*me, "--child", what, "--url", url, "--file", str(file),
                          "--page-rows", str(args.page_rows)])

    _, floor = step("setup")
    imported, imported_mb = step("import")
    again, again_mb = step("import")
    page, page_mb = step("page")
    listed, listed_mb = step("all")
    plain, _ = step("baseline")
    return {
        f"{name}_setup_peak_mb": floor,
        f"{name}_import_s": imported, f"{name}_import_peak_mb": imported_mb,
        f"{name}_reimport_s": again, f"{name}_reimport_peak_mb": again_mb,
        f"{name}_executemany_s": plain,
        f"{name}_page_s": page, f"{name}_page_peak_mb": page_mb,
        f"{name}_list_all_s": listed, f"{name}_list_all_peak_mb": listed_mb,
    }


def best_of(rounds: int, new_database, name: str, file: Path, args: argparse.Namespace
            ) -> dict:
    """The figures of ``rounds`` rounds, each on a new database: the shortest time and the
    highest peak of each; the ratio of the shortest import to the shortest baseline."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        url, drop = new_database()
        try:
            figures = measure(url, name, file, args)
        finally:
            drop()
        for key, value in figures.items():
            keep = max if key.endswith("_mb") else min
            best[key] = keep(best.get(key, value), value)
    best[f"{name}_import_ratio_to_executemany"] = \
        best[f"{name}_import_s"] / best[f"{name}_executemany_s"]
    return best


def command(url: str, name: str, file: Path, folder: Path) -> dict:
    """The whole ``zhichao center devices import`` on a new database."""
    settings = folder / f"{name}.yaml"
    settings.write_text(f"database: {url}\n", encoding="utf-8")
    seconds, peak = run_child([sys.executable, "-c", CLI, "center", "devices", "import",
                               str(file), "--config", str(settings)])
    return {f"{name}_command_import_s": seconds, f"{name}_command_import_peak_mb": peak}


def new_pg_database(server: str) -> tuple[str, Callable[[], None]]:
    """A new database on the server: its SQLAlchemy URL, and a function that drops it."""
    import psycopg  # noqa: PLC0415

    name = f"zhichao_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = server.rsplit("/", 1)[0].split("://", 1)[1]

    def drop() -> None:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://{base}/{name}", drop


def new_sqlite_database(folder: Path) -> tuple[str, Callable[[], None]]:
    """A new SQLite file in the folder: its URL, and a function that deletes it."""
    path = folder / f"bench-{uuid.uuid4().hex[:8]}.db"

    def drop() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    return f"sqlite:///{path}", drop


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=50_000)
    parser.add_argument("--page-rows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is kept")
    parser.add_argument("--pg", metavar="URL", default=os.environ.get("ZHICHAO_TEST_PG"),
                        help="a PostgreSQL server (default: ZHICHAO_TEST_PG; none: SQLite only)")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"s": child(args.child, args.url, args.file, args.page_rows)}))
        return
    console = Console(stderr=args.json)
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        folder = Path(tmp)
        file = folder / "devices.csv"
        write_registry(file, args.devices)
        result = {"devices": args.devices, "file_mb": file.stat().st_size / 2**20}
        console.print(f"SQLite: importing {args.devices} devices, again, listing them; "
                      f"best of {args.repeat} rounds")
        result.update(best_of(args.repeat, lambda: new_sqlite_database(folder), "sqlite",
                              file, args))
        result.update(command(f"sqlite:///{folder / 'cli.db'}", "sqlite", file, folder))
        if args.pg:
            console.print(f"PostgreSQL: the same, each round on a new database of {args.pg}")
            result.update(best_of(args.repeat, lambda: new_pg_database(args.pg),
                                  "postgresql", file, args))
            url, drop = new_pg_database(args.pg)
            try:
                result.update(command(url, "postgresql", file, folder))
            finally:
                drop()
        report(f"device registry: {args.devices} devices", result, console, args.json)


if __name__ == "__main__":
    main()
