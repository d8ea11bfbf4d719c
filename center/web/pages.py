"""What every page module shares: the templates, one function that renders a page or its
JSON twin from the same context, the database session of a request, and the guards of
staff routes (log-in, role, CSRF).

A page handler returns ``page(request, "x.html", context)``; registered for both
``/path`` and ``/path.json`` it answers HTML to the first and the context as JSON to the
second, so what a page shows and what its JSON says cannot drift apart.
"""

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from center.settings import CenterSettings
from center.web import auth

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
ROLES = ("reviewer", "legal_reviewer", "administrator")


def templates(settings: CenterSettings) -> Jinja2Templates:
    """The page templates, autoescaped, with the filters the pages use."""
    t = Jinja2Templates(directory=str(TEMPLATES))
    t.env.globals["authority"] = settings.procedure.authority.name
    t.env.filters["num"] = _num
    return t


def _num(value: Any, digits: int = 0) -> str:
    """A number with thin grouping, as the pages print masses and fines."""
    if value is None:
        return "—"
    return f"{float(value):,.{digits}f}".replace(",", " ")


def db(request: Request) -> Iterator[Session]:
    """A database session for one request (the handler commits what it changes)."""
    with Session(request.app.state.engine) as session:
        yield session


def settings_of(request: Request) -> CenterSettings:
    return request.app.state.settings


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def wants_json(request: Request) -> bool:
    return request.url.path.endswith(".json")


def page(request: Request, template: str, context: dict[str, Any],
         status_code: int = 200, login: auth.Login | None = None) -> Response:
    """The page, or its JSON twin: the same context either way (the log-in's CSRF token
    and officer go to the HTML only)."""
    if wants_json(request):
        return JSONResponse(_plain(context), status_code=status_code)
    extra = {"login": login, "csrf": login.csrf if login else ""}
    return request.app.state.templates.TemplateResponse(
        request, template, {**context, **extra}, status_code=status_code)


def json_text(value: Any) -> str:
    """JSON as the pages embed it in a data attribute (the scripts read it there: no
    inline script)."""
    return json.dumps(_plain(value), ensure_ascii=False)


# --- staff guards -------------------------------------------------------------------------

class NeedsLogIn(HTTPException):
    """Raised for an anonymous request to a staff route: HTML goes to the log-in page,
    JSON gets 401."""


DB = Annotated[Session, Depends(db)]
"""A handler's database session."""


def login_of(request: Request, session: DB) -> auth.Login | None:
    return auth.current(session, request.cookies.get(auth.COOKIE))


LoginOrNone = Annotated[auth.Login | None, Depends(login_of)]


def staff(*roles: str):
    """A dependency: the log-in of a staff member holding one of ``roles`` (any role when
    none is named); 401 (or the log-in page) when anonymous, 403 for another role."""
    def guard(request: Request, login: LoginOrNone) -> auth.Login:
        if login is None:
            raise NeedsLogIn(status_code=401, detail="log in first")
        if roles and not set(roles) & login.officer.roles:
            raise HTTPException(status_code=403,
                                detail=f"this needs the role {' or '.join(roles)}")
        return login
    guard.roles = frozenset(roles or ROLES)  # who may pass: the route walk's test reads it
    return guard


AnyStaff = Annotated[auth.Login, Depends(staff())]
"""A handler's log-in: any member of staff."""


def check_csrf(login: auth.Login, sent: str | None) -> None:
    """403 unless the form carries the session's CSRF token."""
    if not auth.csrf_ok(login, sent):
        raise HTTPException(status_code=403, detail="the form's CSRF token is not this "
                            "session's: reload the page and try again")


def to_login(request: Request, exc: NeedsLogIn) -> Response:
    """Anonymous: HTML to the log-in page (then back), JSON 401."""
    if wants_json(request) or request.method != "GET":
        return JSONResponse({"detail": exc.detail}, status_code=401)
    return RedirectResponse(f"/staff/login?next={request.url.path}", status_code=303)


def refused(request: Request, status_code: int, message: str,
            login: auth.Login | None = None) -> Response:
    """A page that says, in one line, why a request was refused."""
    return page(request, "refused.html", {"message": message}, status_code, login)


HTML = HTMLResponse
