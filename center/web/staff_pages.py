"""Staff pages: log-in and log-out, the review queue, a case with its evidence and its
procedure steps, the registers. Every route but the log-in needs a staff session; every
form that changes something carries the session's CSRF token."""

from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from center.web import auth
from center.web.pages import DB, AnyStaff, check_csrf, page, refused, settings_of
from center.web.staff_lists import FilterError, queue_context, queue_filter

router = APIRouter(tags=["staff"])


def _safe_next(target: str | None) -> str:
    """Where to go after log-in: a path of this site only (no open redirect)."""
    if not target or urlparse(target).netloc or not target.startswith("/") \
            or target.startswith("//"):
        return "/staff"
    return target


@router.get("/staff/login", name="staff_login")
def login_form(request: Request, next: str | None = None) -> Response:
    return page(request, "staff/login.html", {"next": _safe_next(next), "error": None})


@router.post("/staff/login", name="staff_login_post")
def login_post(request: Request, session: DB,
               officer_id: Annotated[str, Form(max_length=32)],
               password: Annotated[str, Form(max_length=auth.PASSWORD_MAX)],
               next: Annotated[str, Form(max_length=500)] = "/staff") -> Response:
    try:
        token = auth.log_in(session, officer_id.strip(), password,
                            settings_of(request).web.session_hours)
    except auth.AuthError as exc:
        return page(request, "staff/login.html", {"next": _safe_next(next),
                                                  "error": str(exc)}, status_code=401)
    session.commit()
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(auth.COOKIE, token, httponly=True, samesite="lax",
                        secure=request.app.state.secure_cookies,
                        max_age=int(settings_of(request).web.session_hours * 3600))
    return response


@router.post("/staff/logout", name="staff_logout")
def logout(request: Request, login: AnyStaff, session: DB,
           csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    check_csrf(login, csrf)
    auth.log_out(session, request.cookies.get(auth.COOKIE))
    session.commit()
    response = RedirectResponse("/staff/login", status_code=303)
    response.delete_cookie(auth.COOKIE)
    return response


@router.get("/staff", name="staff_queue")
@router.get("/staff.json", name="staff_queue_json")
def queue(request: Request, login: AnyStaff, session: DB) -> Response:
    """Cases awaiting a step, oldest first, filtered by site, day (CST), band, evidential
    or not, and state, a page at a time (center.web.staff_lists.queue_filter); a bad
    filter is refused in one line."""
    settings = settings_of(request)
    try:
        chosen = queue_filter(request, settings)
    except FilterError as exc:
        return refused(request, 422, str(exc), login)
    return page(request, "staff/queue.html", queue_context(session, settings, chosen),
                login=login)
