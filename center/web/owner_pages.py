"""The owner's pages: a case looked up by plate and the code printed on its notice, its
evidence and deadline, a statement and defence submitted online. No log-in.

After a look-up the owner holds a short-lived session: a cookie (HttpOnly, SameSite=
Strict, Secure over TLS, path ``/case``) with the case id and a random nonce, signed
(itsdangerous) with a key this process draws at its first look-up. Nothing is stored for
it; it ends after :data:`OWNER_SESSION_S`, when the process restarts, and it is valid only
in the process that signed it (several workers would each need the same key). The
statement form carries a CSRF token derived from the session's nonce.

Look-ups and submissions count against one rate limit per client address
(:class:`center.owner.RateLimiter`, ``web.owner_attempts_per_hour``); over it, 429 with
Retry-After. A wrong code and an unknown plate get the same words, status and work.
"""

import hashlib
import hmac
import math
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from center import owner
from center.law_models import Case
from center.plate_reading import ImageRefusedError
from center.procedure_models import CaseDocument
from center.web.pages import DB, STATIC, page, settings_of, wants_json

router = APIRouter(tags=["owner"])

COOKIE = "zhichao_owner"
"""The owner's session cookie."""
OWNER_SESSION_S = 30 * 60
"""An owner's session lasts half an hour after the look-up."""
NOT_FOUND = ("没有与该号牌和查询码相符的案件。请核对通知书上的号牌和查询码。 "
             "No case matches this plate and code: check both against the notice.")
"""The one answer to a wrong code, an unknown plate and a malformed code alike."""
FORM_SLACK = 64 * 1024
"""Bytes of a statement's form beyond its text and files (field names, boundaries)."""
_key_lock = threading.Lock()


def clock() -> datetime:
    """Now, for the defence window (China time is taken from it); tests move it."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class OwnerSession:
    """An owner's session: the case and the nonce its CSRF token derives from."""

    case_id: int
    nonce: str


def _key(request: Request) -> bytes:
    """The process's signing key for owner sessions, drawn once per app."""
    with _key_lock:
        key = getattr(request.app.state, "owner_key", None)
        if key is None:
            key = request.app.state.owner_key = secrets.token_bytes(32)
        return key


def _signer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_key(request), salt="zhichao owner session")


def limiter(request: Request) -> owner.RateLimiter:
    """The app's rate limiter (in this process's memory), made at first use."""
    with _key_lock:
        found = getattr(request.app.state, "owner_limiter", None)
        if found is None:
            found = request.app.state.owner_limiter = owner.RateLimiter(
                settings_of(request).web.owner_attempts_per_hour)
        return found


def csrf_of(request: Request, sess: OwnerSession) -> str:
    """The CSRF token of the session's forms: an HMAC of its nonce."""
    return hmac.new(_key(request), b"csrf " + sess.nonce.encode(), hashlib.sha256).hexdigest()


def session_of(request: Request) -> OwnerSession | None:
    """The owner's session from the cookie, or None (none, forged, expired)."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 512:
        return None
    try:
        data = _signer(request).loads(token, max_age=OWNER_SESSION_S)
        return OwnerSession(int(data["c"]), str(data["n"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


def _too_many(request: Request) -> Response | None:
    """429 with Retry-After when the client's address is over the rate, else None (and
    the attempt is counted)."""
    address = request.client.host if request.client else "unknown"
    wait = limiter(request).hit(address)
    if wait is None:
        return None
    response = page(request, "owner/lookup.html", {"message": (
        f"查询过于频繁，请 {math.ceil(wait / 60)} 分钟后再试。 Too many attempts from this "
        f"address: try again in {math.ceil(wait)} s."), "plate": ""}, status_code=429)
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


# --- look-up ------------------------------------------------------------------------------

@router.get("/case", name="owner_lookup")
@router.get("/case.json", name="owner_lookup_json")
def lookup_form(request: Request) -> Response:
    """The look-up form: the plate and the code printed on the notice."""
    return page(request, "owner/lookup.html", {"message": None, "plate": ""})


@router.post("/case/lookup", name="owner_lookup_post")
def lookup(request: Request, session: DB,
           plate: Annotated[str, Form(max_length=32)],
           code: Annotated[str, Form(max_length=32)]) -> Response:
    """Find the case; on success a session cookie and the case page. A wrong code and an
    unknown plate answer alike (404, the same words)."""
    refused = _too_many(request)
    if refused is not None:
        return refused
    case = owner.find_case(session, plate, code)
    if case is None:
        return page(request, "owner/lookup.html", {"message": NOT_FOUND,
                                                  "plate": plate[:owner.PLATE_MAX]},
                    status_code=404)
    token = _signer(request).dumps({"c": case.id, "n": secrets.token_urlsafe(16)})
    response = RedirectResponse("/case/view", status_code=303)
    response.set_cookie(COOKIE, token, max_age=OWNER_SESSION_S, path="/case", httponly=True,
                        samesite="strict", secure=request.app.state.secure_cookies)
    return response


def _owner_case(request: Request, session: Session,
                is_page: bool = False) -> tuple[OwnerSession, Case]:
    """The session's case, or 401 (back to the look-up for the case page's HTML)."""
    sess = session_of(request)
    case = session.get(Case, sess.case_id) if sess else None
    if sess is None or case is None:
        if not is_page or wants_json(request):
            raise HTTPException(status_code=401, detail="look the case up first "
                                "(the session ended or was never opened)")
        raise _RelookupError()
    return sess, case


class _RelookupError(Exception):
    """An HTML page asked without a session: back to the look-up form."""


@router.post("/case/leave", name="owner_leave")
def leave(request: Request, csrf: Annotated[str, Form(max_length=128)] = "") -> Response:
    """End the owner's session (the cookie is dropped)."""
    sess = session_of(request)
    if sess is None or not secrets.compare_digest(csrf_of(request, sess), csrf):
        raise HTTPException(status_code=403, detail="the form's token is not this session's")
    response = RedirectResponse("/case", status_code=303)
    response.delete_cookie(COOKIE, path="/case", httponly=True, samesite="strict",
                           secure=request.app.state.secure_cookies)
    return response


# --- the case -----------------------------------------------------------------------------

def _case_page(request: Request, session: Session, sess: OwnerSession, case: Case, *,
               message: str | None = None, error: str | None = None,
               status_code: int = 200) -> Response:
    web = settings_of(request).web
    view = owner.owner_view(session, case, clock())
    return page(request, "owner/case.html", {
        **view, "message": message, "error": error, "owner_csrf": csrf_of(request, sess),
        "limits": {"text_max": owner.TEXT_MAX, "max_attachments": web.max_attachments,
                   "max_attachment_bytes": web.max_attachment_bytes}},
        status_code=status_code)


@router.get("/case/view", name="owner_case")
@router.get("/case/view.json", name="owner_case_json")
def case_page(request: Request, session: DB, sent: int = 0) -> Response:
    """The case as its owner sees it (the session's case only)."""
    try:
        sess, case = _owner_case(request, session, is_page=True)
    except _RelookupError:
        return RedirectResponse("/case", status_code=303)
    return _case_page(request, session, sess, case,
                      message="陈述申辩已提交。 Your statement was received." if sent else None)


@router.get("/case/photo/{index}", name="owner_photo")
def photo(request: Request, session: DB, index: int) -> Response:
    """An evidence photo of the session's case, other vehicles' plates blacked out."""
    _, case = _owner_case(request, session)
    photos = owner.case_photos(session, case)
    if not 0 <= index < len(photos):
        raise HTTPException(status_code=404, detail=f"the case has no photo {index}")
    law = settings_of(request).law
    try:
        jpeg = owner.masked_photo(settings_of(request).images_dir, photos[index],
                                  law.plate_read_max_bytes, law.plate_read_max_pixels)
    except (ImageRefusedError, owner.OwnerError) as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return Response(jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store"})


@router.get("/case/document/{document_id}", name="owner_document")
def document(request: Request, session: DB, document_id: int) -> Response:
    """A document served to the party of the session's case, as its PDF."""
    _, case = _owner_case(request, session)
    docs = {d.id for d in owner.owner_documents(session, case)}
    doc = session.get(CaseDocument, document_id) if document_id in docs else None
    if doc is None:
        raise HTTPException(status_code=404, detail="no such document of this case")
    return Response(doc.pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="case-{case.id}-{doc.kind}.pdf"',
        "Cache-Control": "private, no-store"})


# --- the statement ------------------------------------------------------------------------

def _uploads_outside_web_root(request: Request) -> None:
    """Refuse to store uploads where the static files are served from."""
    uploads = settings_of(request).web.uploads_dir.resolve()
    if uploads == STATIC or STATIC in uploads.parents:
        raise HTTPException(status_code=500, detail="web.uploads_dir lies inside the web "
                            "root: uploads are never stored where they could be served")


async def _read_form(request: Request) -> tuple[str, str, list[owner.Upload]]:
    """The statement's csrf, text and files, bounded: the body's declared size, the
    number of files and fields, each file read to one byte past its limit."""
    web = settings_of(request).web
    declared = request.headers.get("content-length")
    bound = web.max_attachments * (web.max_attachment_bytes + 1) + owner.TEXT_MAX * 12 \
        + FORM_SLACK
    if declared is None or not declared.isdigit():
        raise HTTPException(status_code=411, detail="the form must declare its length")
    if int(declared) > bound:
        raise HTTPException(status_code=413, detail=f"the form has {declared} bytes, more "
                            f"than {web.max_attachments} attachments of at most "
                            f"{web.max_attachment_bytes} bytes and the text can need")
    form = await request.form(max_files=web.max_attachments + 1, max_fields=8,
                              max_part_size=owner.TEXT_MAX * 12 + 1024)  # %-encoded
    files = []
    for item in form.getlist("files"):
        if not isinstance(item, UploadFile):
            continue
        data = await item.read(web.max_attachment_bytes + 1)
        if not item.filename and not data:
            continue  # the browser's empty part when no file was chosen
        files.append(owner.Upload(item.filename or "", data))
    text, csrf = form.get("text"), form.get("csrf")
    return (csrf if isinstance(csrf, str) else "", text if isinstance(text, str) else "",
            files)


def _store(request: Request, session: Session, case_id: int, text: str,
           files: list[owner.Upload]) -> None:
    """Submit and commit; files written for a transaction that fails are removed."""
    settings = settings_of(request)
    statement = owner.submit_statement(session, case_id, text, files, settings,
                                       clock())
    names = owner.stored_names(session, statement.id)
    try:
        session.commit()
    except Exception:
        session.rollback()
        owner.remove_files(settings, names)
        raise


@router.post("/case/statement", name="owner_statement")
async def statement(request: Request, session: DB) -> Response:
    """A statement and defence with attachments, for the session's case, while its
    defence window is open: refused with its reason (400; 403 once the window closed;
    429 over the rate)."""
    sess, case = await run_in_threadpool(_owner_case, request, session)
    _uploads_outside_web_root(request)
    csrf, text, files = await _read_form(request)
    if not secrets.compare_digest(csrf_of(request, sess), csrf):
        raise HTTPException(status_code=403, detail="the form's token is not this session's:"
                            " reload the page and try again")
    refused = _too_many(request)
    if refused is not None:
        return refused
    try:
        await run_in_threadpool(_store, request, session, case.id, text, files)
    except owner.OwnerError as exc:
        await run_in_threadpool(session.rollback)
        status, why = (403 if isinstance(exc, owner.WindowClosedError) else 400), str(exc)
        return await run_in_threadpool(lambda: _case_page(
            request, session, sess, case, error=why, status_code=status))
    return RedirectResponse("/case/view?sent=1", status_code=303)
