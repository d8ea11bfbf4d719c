"""The owner's side of a case: the look-up code printed on the notice, finding a case by
plate and code, the evidence photos with other vehicles' plates masked, and the
statement and defence (陈述、申辩, 行政处罚法 Arts. 44, 45) submitted online.

The code is issued when the notice is rendered (:func:`center.procedure.notify`) and
printed on it. The center keeps only an HMAC-SHA-256 of the code keyed with the case id
(``case_access``): the same code gives another hash for another case, so a table of
hashes cannot be searched across cases. The notice's stored facts (``case_documents``)
hold the code in clear, as the PDF the party receives does: whoever can read the
documents table can read the codes, as they can read the notices themselves.

Every refusal is a :class:`OwnerError` with one line of reason fit for the page.
"""

import hashlib
import hmac
import os
import secrets
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from center import audit
from center.cases import PACKETS
from center.china_time import CST, day_of
from center.documents import KINDS
from center.law_models import Capture, Case
from center.procedure_models import CaseDocument, CaseProcedure
from center.settings import CenterSettings
from center.web_models import CaseAccess, OwnerAttachment, OwnerStatement
from evidence.packet import ImageRef, PacketError, decode_packet
from zhichao.errors import ZhichaoError

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
"""Letters and digits nobody confuses when reading a printed code (no I, L, O, 0, 1)."""
CODE_LENGTH = 10
"""31 ** 10 ≈ 8 × 10^14 codes (49 bits): with the rate limit, guessing is hopeless."""
PLATE_MAX = 16
"""The longest plate accepted in the look-up form (GA 36 plates have 7 or 8 characters)."""
TEXT_MAX = 5000
"""The longest statement, in characters."""
NAME_MAX = 255
"""The longest attachment name kept (the column's width)."""
STATEMENTS_MAX = 10
"""Statements one case may receive online (each may carry attachments)."""
CASES_PER_PLATE_MAX = 200
"""Cases of one plate compared in a look-up (a bound on the work of one request)."""
ACTOR = "owner (online)"
"""The actor of the audit entries an owner's statement writes."""

MEDIA_TYPES = {b"%PDF-": ("application/pdf", ".pdf"),
               b"\xff\xd8\xff": ("image/jpeg", ".jpg"),
               b"\x89PNG\r\n\x1a\n": ("image/png", ".png")}
"""The attachments accepted, told by their first bytes (magic numbers), never by the name
or the type the browser claims."""


class OwnerError(ZhichaoError):
    """An owner's request is refused; the message says why in one line."""


class WindowClosedError(OwnerError):
    """A statement came when the case takes none: not notified, or the window closed."""


# --- the look-up code ---------------------------------------------------------------------

def _code_hash(case_id: int, code: str) -> str:
    """HMAC-SHA-256 of the code keyed with the case id: one code hashes differently for
    every case, so no hash can be looked up across cases."""
    key = f"zhichao case access {case_id}".encode()
    return hmac.new(key, code.encode("ascii"), hashlib.sha256).hexdigest()


def format_code(code: str) -> str:
    """The code as printed: two groups of five (``ABCDE-FGHJK``), easier to copy."""
    return f"{code[:5]}-{code[5:]}"


def normal_code(text: str) -> str | None:
    """The code typed by an owner, without spaces or dashes and in capitals; None when it
    cannot be a code (length or characters)."""
    code = "".join(c for c in str(text)[:64] if c not in " -\t").upper()
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


def normal_plate(text: str) -> str:
    """A plate as typed: width-folded (NFKC), without spaces, dots or dashes, capitals."""
    plate = unicodedata.normalize("NFKC", str(text)[:64])
    return "".join(c for c in plate if c not in " ·.-\t").upper()[:PLATE_MAX]


def issue_code(session: Session, case_id: int) -> str:
    """A new random look-up code for the case, printed as :func:`format_code` gives it;
    only its keyed hash is stored (an earlier code of the case stops working)."""
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    row = session.get(CaseAccess, case_id)
    now = datetime.now(UTC)
    if row is None:
        session.add(CaseAccess(case_id=case_id, code_hash=_code_hash(case_id, code),
                               created_at=now))
    else:
        row.code_hash, row.created_at = _code_hash(case_id, code), now
    session.flush()
    return format_code(code)


def find_case(session: Session, plate: str, code: str) -> Case | None:
    """The case of this plate whose code this is, or None. Every case of the plate is
    compared in constant time, and an unknown plate or a malformed code costs the same
    hashing, so neither the answer nor its time tells whether the plate has cases."""
    wanted = normal_code(code)
    rows = session.execute(select(Case, CaseAccess.code_hash).join(
        CaseAccess, CaseAccess.case_id == Case.id).where(Case.plate == normal_plate(plate))
        .order_by(Case.id).limit(CASES_PER_PLATE_MAX)).all()
    found = None
    for case, stored in rows or [(None, "0" * 64)]:
        digest = _code_hash(case.id if case else 0, wanted or "-" * CODE_LENGTH)
        if hmac.compare_digest(digest, stored) and wanted is not None and case is not None:
            found = case
    return found


# --- the rate limit -----------------------------------------------------------------------

class RateLimiter:
    """At most ``limit`` attempts per client address in a sliding window of ``window_s``
    seconds. Kept in this process's memory: several worker processes each count their
    own, and a restart forgets; the bound is per address as the server sees it (behind a
    proxy, the proxy's)."""

    def __init__(self, limit: int, window_s: float = 3600.0, max_keys: int = 100_000) -> None:
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float | None:
        """Count one attempt of ``key``; None when allowed, else the seconds until the
        next one is (the refused attempt is not counted)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            stamps = self._hits.setdefault(key, deque())
            while stamps and stamps[0] <= now - self.window_s:
                stamps.popleft()
            if len(stamps) >= self.limit:
                return max(1.0, stamps[0] + self.window_s - now)
            stamps.append(now)
            if len(self._hits) > self.max_keys:
                self._forget(now)
            return None

    def _forget(self, now: float) -> None:
        """Drop addresses with no attempt in the window, then the oldest, to stay bounded."""
        for key in [k for k, s in self._hits.items() if not s or s[-1] <= now - self.window_s]:
            del self._hits[key]
        while len(self._hits) > self.max_keys:
            del self._hits[next(iter(self._hits))]


# --- the case as its owner sees it --------------------------------------------------------

STATUS_WORDS = {
    "approved": "已立案 filed", "notified": "已告知，陈述申辩期内 notified: defence window",
    "heard": "已听取陈述申辩 defence heard", "legally_reviewed": "已法制审核 legally reviewed",
    "decided": "已作出决定 decided", "served": "决定已送达 decision served",
    "paid": "已缴纳罚款 paid", "closed": "已结案 closed", "rejected": "已撤销 withdrawn"}
SERVED_KINDS = {"notice", "public_notice"}
"""Documents the owner may download in any state; the decision documents once served."""
DECIDED_KINDS = {"decision", "no_penalty_decision", "credit_repair", "compliance_advice"}
SERVED_STATES = {"served", "paid", "closed"}


def _record(session: Session, case_id: int) -> CaseProcedure | None:
    return session.get(CaseProcedure, case_id)


def window_open(case: Case, rec: CaseProcedure | None, now: datetime) -> str | None:
    """None while a statement may be submitted; else why not, in one line."""
    if case.status != "notified" or rec is None or rec.defence_until is None:
        return (f"the case is {STATUS_WORDS.get(case.status, case.status)}: statements "
                "are taken only while the defence window is open")
    if day_of(now) > rec.defence_until:
        return (f"the defence window closed on {rec.defence_until} (China time): "
                "no statement can be submitted online now")
    return None


def owner_documents(session: Session, case: Case) -> list[CaseDocument]:
    """The documents served to the party: the notice (or its public notice), and the
    decision documents once served."""
    kinds = SERVED_KINDS | (DECIDED_KINDS if case.status in SERVED_STATES else set())
    return list(session.scalars(select(CaseDocument).where(
        CaseDocument.case_id == case.id, CaseDocument.kind.in_(kinds))
        .order_by(CaseDocument.id)))


@dataclass(frozen=True)
class Photo:
    """One evidence image and, for the one the plate was read from, the case's own plate
    box (centre x, y, long side, short side, angle in pixels), else None."""

    ref: ImageRef
    own_box: tuple[float, ...] | None


def case_photos(session: Session, case: Case) -> list[Photo]:
    """The images of the case's evidence capture. The packet's plate box marks the case
    vehicle's plate on the first image of the role it was read from (front when unnamed);
    on the other images it is not known where the plate is."""
    capture = session.get(Capture, case.best_capture_id) if case.best_capture_id else None
    if capture is None or capture.packet_id is None:
        return []
    meta = session.scalar(select(PACKETS.c.meta).where(PACKETS.c.id == capture.packet_id))
    try:
        packet = decode_packet(bytes(meta)) if meta is not None else None
    except PacketError:
        packet = None
    if packet is None:
        return []
    plate = packet.plate if packet.plate is not None and not packet.plate.unread else None
    role = (plate.image or "front") if plate else None
    photos, boxed = [], False
    for ref in packet.images:
        own = None
        if plate is not None and not boxed and ref.role == role:
            own, boxed = tuple(plate.box), True
        photos.append(Photo(ref, own))
    return photos


def _cst_text(t: datetime) -> str:
    """A moment as the owner reads it: China time to the minute."""
    return t.astimezone(CST).strftime("%Y-%m-%d %H:%M") + " 北京时间"


def _notice_facts(session: Session, case_id: int) -> dict:
    facts = session.scalars(select(CaseDocument.facts).where(
        CaseDocument.case_id == case_id, CaseDocument.kind == "notice")
        .order_by(CaseDocument.id.desc()).limit(1)).first()
    return dict(facts or {})


def owner_view(session: Session, case: Case, now: datetime) -> dict:
    """What the owner sees: what the notice told them (facts, evidence, the rules applied
    and the grade, the proposed outcome, the rights and the deadline), how the case
    stands, the documents served, the photos and the statements submitted."""
    rec = _record(session, case.id)
    facts = _notice_facts(session, case.id)
    party = facts.get("party") or {}
    statements = []
    for st in session.scalars(select(OwnerStatement).where(
            OwnerStatement.case_id == case.id).order_by(OwnerStatement.id)):
        files = session.scalars(select(OwnerAttachment).where(
            OwnerAttachment.statement_id == st.id).order_by(OwnerAttachment.id)).all()
        statements.append({"submitted_at": st.submitted_at,
                           "submitted_cst": _cst_text(st.submitted_at),
                           "text": st.text, "attachments": [
            {"name": f.original_name, "media_type": f.media_type, "size": f.size,
             "sha256": f.sha256} for f in files]})
    closed = window_open(case, rec, now)
    return {
        "case": {"id": case.id, "number": rec.number if rec else "", "plate": case.plate,
                 "status": case.status, "status_words": STATUS_WORDS.get(case.status,
                                                                         case.status)},
        "party": {"name": party.get("name", ""), "kind": party.get("kind", "")},
        "vehicle": facts.get("vehicle"), "facts": facts.get("facts"),
        "basis": facts.get("basis"), "outcome": facts.get("outcome"),
        "rights": facts.get("rights"),
        "evidence": facts.get("evidence", []),
        "deadline": rec.defence_until if rec else None,
        "open": closed is None, "closed_because": closed,
        "defence": {"status": rec.defence, "on": rec.defence_on,
                    "answer": rec.defence_answer} if rec and rec.defence else None,
        "decision": {"kind": rec.decision_kind, "fine_yuan": case.decision_fine_yuan,
                     "on": rec.decided_on, "pay_by": rec.pay_by}
        if rec and rec.decided_on else None,
        "photos": [{"index": i, "role": p.ref.role, "sha256": p.ref.sha256}
                   for i, p in enumerate(case_photos(session, case))],
        "documents": [{"id": d.id, "kind": d.kind, "title": KINDS.get(d.kind, d.kind),
                       "sha256": d.sha256,
                       "created_at": d.created_at} for d in owner_documents(session, case)],
        "statements": statements,
    }


# --- photos with other vehicles' plates masked ----------------------------------------------

MASK_GROW = (0.15, 0.35)
"""A plate found is blacked out with this much added along and across it (shares of its
size), so a loose fit leaves no character showing."""


def masked_photo(images_dir: Path, photo: Photo, max_bytes: int, max_pixels: int) -> bytes:
    """The photo as a JPEG with every plate the plate locator finds blacked out, except
    the one that overlaps the case's own plate box (on an image without that box, every
    plate found is blacked out). The locator (:func:`plates.locate.find_candidates`)
    finds plates by their paint (blue, yellow, green) and shape, cheaply and without a
    model; white and black plates are not found by it. The stored file must be the image
    the packet names (its SHA-256), and is bounded in size and pixels before decoding."""
    import cv2  # noqa: PLC0415 (image libraries load only when a photo is asked for)
    import numpy as np  # noqa: PLC0415

    from center.plate_reading import ReadLimits, load_frame  # noqa: PLC0415
    from plates.locate import Box, find_candidates  # noqa: PLC0415

    frame = load_frame(images_dir, photo.ref, ReadLimits(max_bytes, max_pixels))
    own = Box(*photo.own_box) if photo.own_box else None
    for candidate in find_candidates(frame):
        if own is not None and _overlap(candidate.box, own):
            continue
        corners = candidate.box.grown(*MASK_GROW).corners()
        cv2.fillConvexPoly(frame, np.round(corners).astype(np.int32), (0, 0, 0))
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise OwnerError(f"photo {photo.ref.sha256[:12]} could not be encoded")
    return jpeg.tobytes()


def _overlap(a, b) -> bool:
    """Whether two rotated boxes (plates.locate.Box) share any area."""
    import cv2  # noqa: PLC0415

    def rect(x):
        return ((x.cx, x.cy), (x.width, x.height), x.angle)
    kind, _ = cv2.rotatedRectangleIntersection(rect(a), rect(b))
    return kind != cv2.INTERSECT_NONE


# --- the statement ------------------------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    """One file an owner attached: the name their browser gave and its bytes (read up to
    one byte past the limit, so a file too big is known without reading it all)."""

    name: str
    data: bytes


def media_type(data: bytes) -> tuple[str, str] | None:
    """The (media type, extension) of a PDF, JPEG or PNG by its first bytes, else None."""
    return next((kind for magic, kind in MEDIA_TYPES.items() if data.startswith(magic)), None)


def _clean_name(name: str) -> str:
    """The file's own name (no folders), without control characters, bounded."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return (base or "attachment")[:NAME_MAX]


def _checked_files(files: Sequence[Upload], settings: CenterSettings,
                   case_id: int) -> list[tuple[Upload, str, str, str]]:
    """(file, clean name, media type, extension) of every attachment, or the refusal of
    the first that is too many, empty, too big or of a type not accepted."""
    web = settings.web
    if len(files) > web.max_attachments:
        raise OwnerError(f"case {case_id}: {len(files)} attachments; at most "
                         f"{web.max_attachments} may be attached to a statement")
    out = []
    for f in files:
        name = _clean_name(f.name)
        if not f.data:
            raise OwnerError(f"attachment {name!r} is empty")
        if len(f.data) > web.max_attachment_bytes:
            raise OwnerError(f"attachment {name!r} is larger than the "
                             f"{web.max_attachment_bytes} bytes accepted")
        kind = media_type(f.data)
        if kind is None:
            raise OwnerError(f"attachment {name!r} is not a PDF, JPEG or PNG file (its "
                             "content says so, whatever its name)")
        out.append((f, name, *kind))
    return out


def _check_text(text: str, case_id: int) -> str:
    text = str(text).replace("\r\n", "\n").strip()
    if not text:
        raise OwnerError(f"case {case_id}: the statement is empty: say what you state "
                         "or contest")
    if len(text) > TEXT_MAX:
        raise OwnerError(f"case {case_id}: the statement has {len(text)} characters; at "
                         f"most {TEXT_MAX} are accepted (attach longer texts as a PDF)")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in text):
        raise OwnerError(f"case {case_id}: the statement contains control characters")
    return text


def _write(folder: Path, data: bytes, extension: str) -> str:
    """Store the bytes under a new generated name in ``folder``; the name. The file is
    created exclusively, readable by the center's user only."""
    folder.mkdir(parents=True, exist_ok=True)
    name = secrets.token_hex(16) + extension
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return name


def remove_files(settings: CenterSettings, names: Sequence[str]) -> None:
    """Remove stored attachments (a statement whose transaction did not commit)."""
    for name in names:
        (settings.web.uploads_dir / name).unlink(missing_ok=True)


def submit_statement(session: Session, case_id: int, text: str,  # noqa: PLR0917
                     files: Sequence[Upload], settings: CenterSettings,
                     now: datetime) -> OwnerStatement:
    """Store the owner's statement and defence with its attachments, while the case is
    notified and its defence window open on ``now``'s day in China; audited. The files
    go to ``web.uploads_dir`` under generated names with their SHA-256 recorded. The
    caller commits (and on failure removes the files: :func:`remove_files`)."""
    case = session.get(Case, case_id)
    if case is None:
        raise OwnerError(f"case {case_id} does not exist")
    why = window_open(case, _record(session, case_id), now)
    if why:
        raise WindowClosedError(f"case {case_id}: {why}")
    text = _check_text(text, case_id)
    checked = _checked_files(files, settings, case_id)
    earlier = session.scalar(select(func.count()).select_from(OwnerStatement).where(
        OwnerStatement.case_id == case_id)) or 0
    if earlier >= STATEMENTS_MAX:
        raise OwnerError(f"case {case_id}: {earlier} statements were submitted online, the "
                         "most accepted; bring further ones to the authority's desk")
    statement = OwnerStatement(case_id=case_id, submitted_at=now, text=text)
    session.add(statement)
    session.flush()
    written: list[str] = []
    try:
        for f, name, kind, extension in checked:
            stored = _write(settings.web.uploads_dir, f.data, extension)
            written.append(stored)
            session.add(OwnerAttachment(statement_id=statement.id, stored_name=stored,
                                        original_name=name, media_type=kind,
                                        size=len(f.data),
                                        sha256=hashlib.sha256(f.data).hexdigest()))
        session.flush()
        audit.append(session, case_id, "owner_statement",
                     f"statement {statement.id} submitted online: {len(text)} characters, "
                     f"{len(checked)} attachments" + "".join(
                         f"; {n} ({k}, {len(f.data)} bytes, SHA-256 "
                         f"{hashlib.sha256(f.data).hexdigest()})" for f, n, k, _ in checked),
                     actor=ACTOR, at=now)
    except Exception:
        remove_files(settings, written)
        raise
    return statement


def stored_names(session: Session, statement_id: int) -> list[str]:
    """The generated file names of a statement's attachments."""
    return list(session.scalars(select(OwnerAttachment.stored_name).where(
        OwnerAttachment.statement_id == statement_id)))
