"""Every route of the web app's route table, walked as anonymous, as each role and with a
forged CSRF token: a staff route refuses anonymous requests (401, or the log-in page for
an HTML GET), a route for some roles refuses the others (403), and no refused POST
changes anything (every table's rows compared before and after). Public pages answer
anonymous requests. The routes are read from ``app.routes``, so a page added later is
walked without a change here.

Path parameters get real values where the center has them: a case id, a device id, a
document id (one case is taken to its notice for that), a photo's SHA-256.
"""

import functools
import hashlib
import inspect as pyinspect
import socket
import threading
import time
import typing
from datetime import date, datetime
from enum import Enum
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, select
from sqlalchemy.orm import Session
from web_factory import PASSWORD, WebCenter, log_in, web_center

from center import procedure
from center.procedure_models import CaseDocument
from center.service import run_center
from center.web.auth import COOKIE

ROLE_OF = {"ZF001": "reviewer", "FS001": "legal_reviewer", "ADM01": "administrator"}
"""One officer of each role (the staff register of tests/center_factory.py)."""
FORGED = "forged-" + "0" * 36


# --- the route table -----------------------------------------------------------------------

def api_routes(client: TestClient) -> list[APIRoute]:
    """The app's own routes (not the static mount, not the OpenAPI pages), those of the
    included routers among them (FastAPI ≥ 0.130 keeps an included router as one entry of
    ``app.routes``; ``iter_route_contexts`` opens it)."""
    try:
        from fastapi.routing import iter_route_contexts  # noqa: PLC0415
    except ImportError:  # an older FastAPI: the routes are copied into app.routes
        return [r for r in client.app.routes if isinstance(r, APIRoute)]
    out = []
    for context in iter_route_contexts(client.app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            assert context.path == route.path, f"{route.path} included under a prefix"
            out.append(route)
    return out


def roles_of(route: APIRoute) -> frozenset[str] | None:
    """The roles a route admits (its staff guard's ``roles``), or None for a route with
    no staff guard anywhere in its dependencies."""
    guards: list[frozenset[str]] = []
    todo = list(route.dependant.dependencies)
    while todo:
        dep = todo.pop()
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            guards.append(frozenset(roles))
        todo.extend(dep.dependencies)
    return frozenset.intersection(*guards) if guards else None  # every guard must pass


def methods(route: APIRoute) -> list[str]:
    return sorted(m for m in route.methods if m in ("GET", "POST"))


# --- filling paths and forms ---------------------------------------------------------------

def real_ids(center: WebCenter) -> dict[str, str]:
    """Real values for path parameters, by a word in their name."""
    with Session(center.engine) as s:
        document = s.scalar(select(CaseDocument.id).order_by(CaseDocument.id))
    photos = sorted(p.name for p in (center.settings.images_dir).glob("*/*"))
    return {"case": str(center.cases[0]), "device": "D1", "document": str(document or 1),
            "doc": str(document or 1), "sha": photos[0] if photos else "0" * 64,
            "capture": "1", "officer": "ZF001", "plate": "浙A12345"}


def fill(route: APIRoute, ids: dict[str, str]) -> str:
    """The route's path with each parameter a real value where one is known."""
    path = route.path
    for name in route.param_convertors:
        value = next((v for k, v in ids.items() if k in name.lower()), "1")
        path = path.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
    return path


def all_real(route: APIRoute, ids: dict[str, str]) -> bool:
    """Whether every path parameter of the route got a real value (else 404 is right)."""
    return all(any(k in name.lower() for k in ids) for name in route.param_convertors)


def _value(name: str, annotation: Any) -> Any:
    """A plausible form value for a field (so the request reaches the handler's checks)."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Literal:
        return str(args[0])
    if origin is not None and args:
        return _value(name, args[0])
    if pyinspect.isclass(annotation):
        if issubclass(annotation, Enum):
            return str(next(iter(annotation)).value)
        if issubclass(annotation, bool):
            return "true"
        if issubclass(annotation, int):
            return "1"
        if issubclass(annotation, float):
            return "1"
        if issubclass(annotation, datetime):
            return "2026-06-01T10:00:00"
        if issubclass(annotation, date):
            return "2026-06-01"
    hints = {"plate": "浙A12345", "colour": "yellow", "officer": "ZF002", "outcome": "waived",
             "reason": "other", "code": "ABCDEFGH"}
    return next((v for k, v in hints.items() if k in name.lower()), "x")


def form_of(route: APIRoute, csrf: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Form fields and files a POST route reads, filled, with ``csrf`` as its token."""
    data: dict[str, str] = {}
    files: dict[str, Any] = {}
    for field in route.dependant.body_params:
        name = field.alias
        annotation = field.field_info.annotation
        if "UploadFile" in str(annotation):
            files[name] = ("note.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")
        elif name == "csrf":
            data[name] = csrf
        else:
            data[name] = _value(name, annotation)
    if not route.dependant.body_params:  # a handler that reads its form itself (uploads)
        data = {"csrf": csrf, "text": "x"}
        files = {"file": ("devices.csv", b"device_id\nX1\n", "text/csv")}
    return data, files


# --- what may not change -------------------------------------------------------------------

@functools.cache
def tables_of(engine: Engine) -> MetaData:
    """The database's tables, as migrated (read once per database)."""
    meta = MetaData()
    meta.reflect(engine)
    return meta


def fingerprint(engine: Engine) -> dict[str, tuple[int, str]]:
    """Each table's row count and a digest of its rows (the audit log's length among
    them): a refused request leaves every one as it was."""
    meta = tables_of(engine)
    out = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            rows = sorted(repr(tuple(r)) for r in conn.execute(select(table)))
            out[name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return out


def changed(before: dict, after: dict) -> list[str]:
    return [f"{t} {before.get(t, (0,))[0]}→{after.get(t, (0,))[0]} rows"
            for t in sorted(set(before) | set(after)) if before.get(t) != after.get(t)]


# --- the walk ------------------------------------------------------------------------------

@pytest.fixture
def center(center_db_url, tmp_path) -> WebCenter:
    """The test center, one case taken to its notice (for a real document id)."""
    c = web_center(center_db_url, tmp_path)
    desk = procedure.desk_for(c.settings)
    with Session(c.engine) as s, s.begin():
        case_id = c.cases[-1]
        procedure.review(s, case_id, "ZF001", desk)
        procedure.approve(s, case_id, "ZF002", desk)
        procedure.notify(s, case_id, "ZF001", desk)
    yield c
    c.client.close()
    c.engine.dispose()


def clients(center: WebCenter) -> dict[str, tuple[TestClient, str]]:
    """A client logged in for each officer of ROLE_OF, with the session's CSRF token."""
    out = {}
    for officer in ROLE_OF:
        client = TestClient(center.client.app)
        out[officer] = (client, log_in(client, officer))
    return out


def refused_anonymously(status: int, response) -> bool:
    location = response.headers.get("location", "")
    return status == 401 or (status in (302, 303, 307) and location.startswith("/staff/login"))


def test_the_walk_finds_staff_and_public_routes(center):
    routes = api_routes(center.client)
    staff = [r for r in routes if roles_of(r) is not None]
    public = [r for r in routes if roles_of(r) is None]
    assert any(r.path == "/staff" for r in staff), [r.path for r in staff]
    assert any(r.path == "/devices" for r in public)
    assert all(r.path.startswith("/staff") for r in staff if "GET" in r.methods), \
        "a staff page outside /staff"
    print({"staff routes": len(staff), "public routes": len(public)})


def test_anonymous_requests_to_staff_routes_are_refused(center):
    ids = real_ids(center)
    anonymous = TestClient(center.client.app)
    wrong = []
    for route in api_routes(center.client):
        if roles_of(route) is None:
            continue
        path = fill(route, ids)
        for method in methods(route):
            before = fingerprint(center.engine) if method == "POST" else None
            data, files = form_of(route, FORGED) if method == "POST" else ({}, {})
            r = anonymous.request(method, path, data=data or None, files=files or None,
                                  follow_redirects=False)
            if not refused_anonymously(r.status_code, r):
                wrong.append(f"{method} {path}: {r.status_code} {r.text[:120]}")
            if method == "POST" and r.status_code != 401:
                wrong.append(f"POST {path}: anonymous answered {r.status_code}, not 401")
            if before is not None and (diff := changed(before, fingerprint(center.engine))):
                wrong.append(f"{method} {path} anonymous changed {diff}")
    assert not wrong, "\n".join(wrong)


def test_each_role_is_refused_routes_of_other_roles(center):
    ids = real_ids(center)
    logged_in = clients(center)
    wrong, walked = [], 0
    for route in api_routes(center.client):
        roles = roles_of(route)
        if roles is None:
            continue
        path = fill(route, ids)
        for officer, (client, csrf) in logged_in.items():
            if ROLE_OF[officer] in roles:
                continue
            for method in methods(route):
                walked += 1
                before = fingerprint(center.engine) if method == "POST" else None
                data, files = form_of(route, csrf) if method == "POST" else ({}, {})
                r = client.request(method, path, data=data or None, files=files or None,
                                   follow_redirects=False)
                if r.status_code != 403:
                    wrong.append(f"{method} {path} as {officer}: {r.status_code}")
                if before is not None and (diff := changed(before, fingerprint(center.engine))):
                    wrong.append(f"{method} {path} as {officer} changed {diff}")
    assert not wrong, "\n".join(wrong)
    print({"wrong-role requests": walked})


NO_TOKEN = {"/staff/login", "/case/lookup"}
"""The POST routes that open a session (no session yet, so no token): the log-in and
the owner's look-up (rate-limited)."""


def owner_client(center: WebCenter) -> TestClient:
    """A client with the owner's session of the notified case (its notice's code)."""
    with Session(center.engine) as s:
        facts = s.scalar(select(CaseDocument.facts).where(
            CaseDocument.case_id == center.cases[-1], CaseDocument.kind == "notice"))
    client = TestClient(center.client.app)
    code = (facts or {}).get("lookup_code")
    if code:
        r = client.post("/case/lookup", data={"plate": "浙A12345", "code": code},
                        follow_redirects=False)
        assert r.status_code == 303, r.text[:300]
    return client


def test_a_forged_csrf_token_changes_nothing(center):
    """Each POST route but those that open a session, as an officer it admits (or as the
    owner, for the owner's forms), with a token not the session's: 403, nothing changed."""
    ids = real_ids(center)
    logged_in = clients(center)
    owner = owner_client(center)
    wrong, walked = [], 0
    for route in api_routes(center.client):
        if "POST" not in route.methods or route.path in NO_TOKEN:
            continue
        roles = roles_of(route)
        if roles is None:
            client = owner
        else:
            officer = next(o for o, role in ROLE_OF.items() if role in roles)
            client = logged_in[officer][0]
        path = fill(route, ids)
        data, files = form_of(route, FORGED)
        before = fingerprint(center.engine)
        r = client.post(path, data=data, files=files or None, follow_redirects=False)
        walked += 1
        if r.status_code != 403:
            wrong.append(f"POST {path}: {r.status_code} {r.text[:160]}")
        if diff := changed(before, fingerprint(center.engine)):
            wrong.append(f"POST {path} with a forged token changed {diff}")
    assert not wrong, "\n".join(wrong)
    assert walked >= 1  # at least log-out
    print({"forged POSTs": walked})


def test_staff_pages_answer_the_roles_they_serve(center):
    """A GET of every staff page as an officer it admits: 200 (HTML and JSON twin)."""
    ids = real_ids(center)
    logged_in = clients(center)
    wrong = []
    for route in api_routes(center.client):
        roles = roles_of(route)
        if roles is None or "GET" not in route.methods:
            continue
        officer = next(o for o, role in ROLE_OF.items() if role in roles)
        r = logged_in[officer][0].get(fill(route, ids), follow_redirects=False)
        if r.status_code != 200 and not (r.status_code == 404 and not all_real(route, ids)):
            wrong.append(f"GET {fill(route, ids)} as {officer}: {r.status_code} "
                         f"{r.text[:160]}")
    assert not wrong, "\n".join(wrong)


def test_public_pages_answer_anonymous_requests(center):
    ids = real_ids(center)
    anonymous = TestClient(center.client.app)
    wrong = []
    for route in api_routes(center.client):
        if roles_of(route) is not None or "GET" not in route.methods:
            continue
        path = fill(route, ids)
        r = anonymous.get(path, follow_redirects=False)
        if r.status_code != 200 and "public" in (route.tags or []) and all_real(route, ids):
            wrong.append(f"GET {path}: {r.status_code} {r.text[:160]}")
        elif r.status_code >= 500:
            wrong.append(f"GET {path}: {r.status_code}")
        if COOKIE in r.cookies:
            wrong.append(f"GET {path} set a staff session cookie")
    assert not wrong, "\n".join(wrong)


# --- the pages served by `center run` ----------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_center_run_serves_the_pages_when_its_settings_say_so(tmp_path):
    center = web_center(f"sqlite:///{tmp_path / 'center.db'}", tmp_path)
    port = free_port()
    settings = center.settings.model_copy(update={"web": center.settings.web.model_copy(
        update={"serve_with_run": True, "host": "127.0.0.1", "port": port})})
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_center(settings, receive=False, stop=stop)
        except BaseException as exc:  # reported below
            failure.append(exc)

    thread = threading.Thread(target=run, name="center-run", daemon=True)
    thread.start()
    try:
        deadline, answer = time.monotonic() + 15, None
        while answer is None and time.monotonic() < deadline and thread.is_alive():
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/devices.json", timeout=2)
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None, failure
        assert answer.status_code == 200
        assert {d["device_id"] for d in answer.json()["devices"]} == {"D1", "D2"}
        r = httpx.post(f"http://127.0.0.1:{port}/staff/login", timeout=5,
                       data={"officer_id": "ZF001", "password": PASSWORD})
        assert r.status_code == 303
    finally:
        stop.set()
        thread.join(timeout=15)
        center.engine.dispose()
    assert not thread.is_alive() and not failure, failure

