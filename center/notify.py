"""Sending the procedure's documents to the party: e-mail, a letter batch for the post, SMS.

A :class:`Notifier` tries its channels in the order the settings give (e.g. e-mail, then
SMS, then a letter) until one succeeds and returns every attempt as a :class:`Delivery`,
for the case's record of service. A channel never raises for a failed delivery (a refused
recipient, a server that is down or silent, no address for the channel): it returns
``ok=False`` with a one-line reason. A wrong call (a message that is not a Message) may
still raise. When no attempt succeeded (:func:`undeliverable`) the procedure turns to
service by public notice (公告送达), which 行政处罚法 Art. 61 allows through the rules of the
民事诉讼法 (not in shared/law; not checked here).

Electronic service needs the party's consent: 行政处罚法 Art. 61 ¶2 allows a decision and
other documents to be served by e-mail and the like only when the party agreed and signed a
confirmation (确认书). The e-mail and SMS channels therefore decline a recipient whose
:attr:`Recipient.electronic_consent` is not set, and the next channel (the letter) is tried.

What ``ok`` means differs by channel and is said in each delivery's detail: for e-mail, the
party's mail server accepted the message for the recipient; for a letter, the documents were
written into the day's print batch, to be printed and posted by staff (the letter is not yet
delivered); for SMS, the message was handed to the gateway (here a folder standing in for
one).
"""

import csv
import ipaddress
import json
import os
import re
import smtplib
import socket
import ssl
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, make_msgid
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from center.china_time import day_of
from center.spreadsheet import csv_cell
from zhichao.errors import ConfigError
from zhichao.settings import count, load_model, number

"""China Standard Time (UTC+8, no daylight saving): the day a letter batch is named after is
the day in the office that prints and posts it."""
KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
"""A message's kind (notice, decision, ...): a short lower-case word, safe in a file name."""
PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,22}[0-9]$")
"""A phone number as a person types it: digits, with spaces or dashes, an optional +."""
MANIFEST_FIELDS = ("recipient", "postal_address", "case_id", "kind", "file", "sha256")
"""Columns of a letter batch's manifest.csv: one row per printed file."""
LOOPBACK_HOSTS = ("localhost",)
SECRET_KEYS = frozenset({"password", "passwd", "pass", "secret"})
"""Keys under which a password would be written in the settings: refused unrepeated."""
DETAIL_MAX_CHARS = 300
"""A delivery's detail is one line of at most this many characters."""


class NotifyError(ConfigError):
    """The notifier's settings are wrong, or a password they name cannot be read."""


# Plain data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    """The party a document goes to, with the addresses known for each channel.

    ``electronic_consent``: the party agreed and signed a confirmation (确认书) to be served
    by e-mail and the like (行政处罚法 Art. 61 ¶2); without it the e-mail and SMS channels
    decline. A blank address counts as none.
    """

    name: str
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    electronic_consent: bool = False


@dataclass(frozen=True, slots=True)
class Attachment:
    """One file sent with a message, e.g. a rendered PDF document."""

    filename: str
    data: bytes
    mime: str = "application/pdf"

    def __post_init__(self) -> None:
        """A MIME type is ``type/subtype``; a file has a name."""
        if not self.filename.strip() or not re.fullmatch(r"[\w.+-]+/[\w.+-]+", self.mime):
            raise ValueError(f"attachment needs a file name and a type/subtype MIME type "
                             f"(got {self.filename!r}, {self.mime!r})")


@dataclass(frozen=True, slots=True)
class Message:
    """A document (or notice of one) for one case. ``kind`` is notice, decision, ... .

    The subject is one line: a line break in it could add mail headers.
    """

    case_id: int
    kind: str
    subject: str
    text: str
    attachments: tuple[Attachment, ...] = ()

    def __post_init__(self) -> None:
        """Refuse a message no channel could send faithfully: this is a caller's error."""
        if not KIND.match(self.kind):
            raise ValueError(f"message kind must be a short lower-case word (got {self.kind!r})")
        if "\n" in self.subject or "\r" in self.subject or not self.subject.strip():
            raise ValueError(f"message subject must be one non-empty line "
                             f"(got {self.subject!r})")
        if not all(isinstance(a, Attachment) for a in self.attachments):
            raise TypeError("message attachments must be Attachment objects")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt on one channel: where to, whether it succeeded, why (one line), when."""

    channel: str
    address: str
    ok: bool
    detail: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Channel(Protocol):
    """A way to reach a party. ``send`` returns ``ok=False`` with a reason for any failure
    to deliver, and raises only for a programming error."""

    name: str

    def send(self, message: Message, recipient: Recipient) -> Delivery:
        """Deliver ``message`` to ``recipient`` once; never retried here."""
        ...


def _one_line(text: str) -> str:
    """A reason as one line of bounded length (a server's reply may span lines)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= DETAIL_MAX_CHARS else flat[:DETAIL_MAX_CHARS - 1] + "…"


def _blank(value: str | None) -> str | None:
    """An address with its spaces trimmed, or None when there is none."""
    return value.strip() if value is not None and value.strip() else None


def _no_consent(channel: str, address: str) -> Delivery:
    """The attempt an electronic channel records for a party who has not consented."""
    return Delivery(channel, address, False, "no consent to electronic service (行政处罚法 "
                    "Art. 61 ¶2: the party must agree and sign a confirmation)")


# E-mail ---------------------------------------------------------------------------------


class EmailSettings(BaseModel):
    """An SMTP server to send through. The password is never in the settings file: it is
    read from ``password_file`` or from the environment variable ``password_env``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    host: str = Field(min_length=1, description="the SMTP server's host name or address")
    port: count(65535, "the highest TCP port") = Field(
        25, description="its port: 25 (relay), 587 (submission, with starttls)")
    sender: str = Field(min_length=3, description="the From address of every message")
    timeout_s: number(120, "two minutes; a slower server holds up every later notice", unit=" s") \
        = Field(10.0, description="the longest any one network step (connect, a reply) may "
                "take before the attempt counts as failed")
    starttls: bool = Field(False, description="encrypt the connection with STARTTLS "
                           "before anything else is sent (required for login, except to "
                           "a server on this machine)")
    ca_file: Path | None = Field(None, description="certificates to trust for STARTTLS "
                                 "(a private CA); default: the system's")
    username: str | None = Field(None, min_length=1, description="login name, if the "
                                 "server wants a login")
    password_file: Path | None = Field(None, description="a file holding the password "
                                       "(its first line)")
    password_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                     description="or the environment variable holding it")
    helo_name: str | None = Field(None, min_length=1, description="the name this machine "
                                  "gives in EHLO; default its host name")

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: Any) -> Any:
        """A password written into the settings is refused without repeating it."""
        if isinstance(data, dict) and any(str(k).lower() in SECRET_KEYS for k in data):
            raise ValueError("a password is never written in the settings: name a file "
                             "holding it (password_file) or an environment variable "
                             "(password_env)")
        return data

    @field_validator("sender")
    @classmethod
    def _address(cls, value: str) -> str:
        """The sender must be a plain mailbox, or every server refuses the mail."""
        try:
            address = Address(addr_spec=value)
        except (ValueError, IndexError, HeaderParseError):
            address = None
        if address is None or not address.username or not address.domain:
            raise ValueError(f"must be an e-mail address such as zhifa@example.gov.cn "
                             f"(got {value!r})")
        return value

    @model_validator(mode="after")
    def _login(self) -> "EmailSettings":
        """A login needs one source of password, and an encrypted connection unless the
        server is on this machine: a password is never sent over a network in clear."""
        sources = (self.password_file is not None) + (self.password_env is not None)
        if self.username is None and sources:
            raise ValueError("password_file or password_env is given without a username")
        if self.username is not None and sources != 1:
            raise ValueError("a username needs exactly one of password_file and "
                             f"password_env (got {sources})")
        if self.username is not None and not self.starttls and not _loopback(self.host):
            raise ValueError(f"a login to {self.host} needs starttls: true, or the password "
                             "would cross the network unencrypted")
        return self


def _loopback(host: str) -> bool:
    """True for a host on this machine (a local relay), where no network is crossed."""
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_password(settings: EmailSettings, base_dir: Path) -> str | None:
    """The login password from its file (first line) or environment variable; NotifyError
    naming the option when it cannot be had. None when there is no login."""
    if settings.password_file is not None:
        path = settings.password_file
        path = path if path.is_absolute() else base_dir / path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise NotifyError(f"option 'email.password_file': cannot read {path}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        if not lines or not lines[0]:
            raise NotifyError(f"option 'email.password_file': {path} is empty")
        return _ascii(lines[0], "password_file")
    if settings.password_env is not None:
        value = os.environ.get(settings.password_env)
        if not value:
            raise NotifyError(f"option 'email.password_env': the environment variable "
                              f"{settings.password_env} is not set")
        return _ascii(value, "password_env")
    return None


def _ascii(password: str, option: str) -> str:
    """smtplib sends a login as ASCII: another password could never log in, so it is
    refused here rather than at each sending (the password itself is not repeated)."""
    if not password.isascii():
        raise NotifyError(f"option 'email.{option}': the password holds characters other "
                          "than ASCII, which the SMTP login cannot send")
    return password


class EmailChannel:
    """E-mail through an SMTP server (smtplib): a MIME message with the UTF-8 subject, the
    text and the PDF documents attached. ``ok`` only when the server accepted the
    recipient and the message."""

    name = "email"

    def __init__(self, settings: EmailSettings, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self._password = password
        self._ssl = ssl_context

    def __repr__(self) -> str:
        """Never the password."""
        s = self.settings
        return f"EmailChannel({s.host}:{s.port}, sender={s.sender!r})"

    def build(self, message: Message, recipient: Recipient, to: str) -> EmailMessage:
        """The MIME message: headers (RFC 2047-encoded where Chinese), text, attachments."""
        mail = EmailMessage(policy=SMTP_POLICY)
        mail["Subject"] = message.subject
        mail["From"] = self.settings.sender
        mail["To"] = Address(display_name=recipient.name, addr_spec=to)
        mail["Date"] = format_datetime(datetime.now(UTC))
        mail["Message-ID"] = make_msgid(domain=self.settings.sender.rpartition("@")[2])
        mail["X-Case-Id"] = str(message.case_id)
        mail["X-Document-Kind"] = message.kind
        mail.set_content(message.text, cte="base64")  # 7-bit: any server relays it
        for attachment in message.attachments:
            maintype, _, subtype = attachment.mime.partition("/")
            mail.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                                filename=attachment.filename)
        return mail

    def send(self, message: Message, recipient: Recipient) -> Delivery:
        """Send one message to the recipient's e-mail address; see the class."""
        to = _blank(recipient.email)
        if to is None:
            return Delivery(self.name, "", False, "no e-mail address for this recipient")
        if not recipient.electronic_consent:
            return _no_consent(self.name, to)
        try:
            mail = self.build(message, recipient, to)
        except (ValueError, IndexError, HeaderParseError) as exc:  # a malformed address
            return Delivery(self.name, to, False, _one_line(
                f"cannot address a message to {to!r}: {exc}"))
        try:
            refused = self._transmit(mail, to)
        except (smtplib.SMTPException, OSError) as exc:
            return Delivery(self.name, to, False, _one_line(self._reason(exc, to)))
        if to in refused:  # cannot happen with one recipient: smtplib raises instead
            code, text = refused[to]
            return Delivery(self.name, to, False, _one_line(
                f"refused recipient {to}: {code} {_text(text)}"))
        s = self.settings
        return Delivery(self.name, to, True, f"accepted by {s.host}:{s.port} for {to}")

    def _transmit(self, mail: EmailMessage, to: str) -> dict:
        """One SMTP session: connect, STARTTLS and login if set, send; the refused map."""
        s = self.settings
        helo = s.helo_name or socket.gethostname()  # not getfqdn: no DNS look-up
        with smtplib.SMTP(s.host, s.port, local_hostname=helo, timeout=s.timeout_s) as smtp:
            if s.starttls:
                context = self._ssl or ssl.create_default_context(
                    cafile=str(s.ca_file) if s.ca_file else None)
                smtp.starttls(context=context)
            if s.username is not None:
                smtp.login(s.username, self._password or "")
            return smtp.send_message(mail, from_addr=s.sender, to_addrs=[to])

    def _reason(self, exc: BaseException, to: str) -> str:
        """Why an attempt failed, in words a clerk can act on."""
        s = self.settings
        where = f"{s.host}:{s.port}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code, text = exc.recipients.get(to, (None, b""))
            return f"refused recipient {to}: {code} {_text(text)}"
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return f"{where} refused the sender {s.sender}: {exc.smtp_code} " \
                   f"{_text(exc.smtp_error)}"
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return f"{where} refused the login of {s.username}: {exc.smtp_code} " \
                   f"{_text(exc.smtp_error)}"
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return f"{where} does not offer what the settings need: {exc}"
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"{where} refused: {exc.smtp_code} {_text(exc.smtp_error)}"
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            return f"timeout: {where} did not answer within {s.timeout_s:g} s"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return f"server down: {where} closed the connection ({exc})"
        if isinstance(exc, ConnectionRefusedError):
            return f"server down: connection to {where} refused"
        if isinstance(exc, ssl.SSLError):
            return f"STARTTLS with {where} failed: {exc}"
        if isinstance(exc, OSError):
            return f"server unreachable: {where}: {exc.strerror or exc}"
        return f"SMTP error with {where}: {exc}"


def _text(reply: bytes | str) -> str:
    """A server's reply text, whatever its encoding."""
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


# Letter batch ---------------------------------------------------------------------------


def _safe_name(filename: str) -> str:
    """A file name that stays in the batch folder: no directories, no odd characters."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^\w.-]+", "_", base).strip("._") or "document"
    return base[:80]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a file whole or not at all (a printer never sees half a PDF)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class LetterBatchChannel:
    """Letters for printing and posting: each message's PDF documents are written into the
    day's batch folder (``folder/YYYY-MM-DD``, the day in China) with a row per file in the
    batch's ``manifest.csv`` (recipient, postal address, case id, kind, file, SHA-256),
    whose cells are safe to open in a spreadsheet (:func:`center.export.csv_cell`). The
    manifest is UTF-8 with a byte order mark, so a spreadsheet on a Chinese desktop reads
    it as UTF-8.

    ``ok`` means written to the batch; staff then print and post the letter, so it is not
    yet delivered (the detail says so). No postal address, no PDF or a folder that cannot
    be written: ``ok=False``.
    """

    name = "letter"

    def __init__(self, folder: Path, clock: Callable[[], datetime] | None = None) -> None:
        self.folder = Path(folder)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()

    def send(self, message: Message, recipient: Recipient) -> Delivery:
        """Write one letter into the day's batch; see the class."""
        address = _blank(recipient.address)
        if address is None:
            return Delivery(self.name, "", False, "no postal address for this recipient")
        if not message.attachments:
            return Delivery(self.name, address, False, "nothing to print: the message has "
                            "no PDF document")
        for attachment in message.attachments:
            if attachment.mime != "application/pdf" or not attachment.data.startswith(b"%PDF-"):
                return Delivery(self.name, address, False, _one_line(
                    f"{attachment.filename} is not a PDF; a letter batch prints PDFs only"))
        now = self._clock()
        batch = self.folder / day_of(now).isoformat()
        try:
            with self._lock:
                files = self._write(batch, message, recipient, address)
        except OSError as exc:
            return Delivery(self.name, address, False, _one_line(
                f"cannot write the letter batch {batch.name}: {exc.strerror or exc}"))
        return Delivery(self.name, address, True, _one_line(
            f"written to letter batch {batch.name} ({', '.join(files)}): to be printed and "
            "posted by staff, not yet delivered"), at=now)

    def _write(self, batch: Path, message: Message, recipient: Recipient,
               address: str) -> list[str]:
        """The PDFs under names no earlier letter of the batch holds, then their manifest
        rows; the names written."""
        batch.mkdir(parents=True, exist_ok=True)
        rows, names = [], []
        for n, attachment in enumerate(message.attachments, 1):
            stem = f"case{message.case_id}-{message.kind}-{n}-" \
                   f"{_safe_name(attachment.filename).removesuffix('.pdf')}"
            path, again = batch / f"{stem}.pdf", 1
            while path.exists():
                again += 1
                path = batch / f"{stem}-{again}.pdf"
            _write_atomic(path, attachment.data)
            names.append(path.name)
            rows.append((recipient.name, address, message.case_id, message.kind, path.name,
                         sha256(attachment.data).hexdigest()))
        manifest = batch / "manifest.csv"
        new = not manifest.exists()
        with manifest.open("a", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
            if new:
                writer.writerow(MANIFEST_FIELDS)
            writer.writerows([[csv_cell(v) for v in row] for row in rows])
        return names


# SMS ------------------------------------------------------------------------------------


class SmsFolderChannel:
    """SMS through a gateway. A real SMS gateway (an operator's or a provider's API) cannot
    be reached here; this channel is the test stand-in that writes each message as one JSON
    file (to, text, case id, kind) into ``folder``, where a gateway adapter would pick it
    up. ``ok`` means the file was written, never that a phone received it.

    The text is the message's own, of at most ``max_chars`` characters; a longer one is
    refused, not cut. No phone number, or no consent to electronic service: ``ok=False``.
    """

    name = "sms"

    def __init__(self, folder: Path, max_chars: int = 70) -> None:
        self.folder = Path(folder)
        self.max_chars = max_chars

    def send(self, message: Message, recipient: Recipient) -> Delivery:
        """Write one SMS file; see the class."""
        phone = _blank(recipient.phone)
        if phone is None:
            return Delivery(self.name, "", False, "no phone number for this recipient")
        if not PHONE.match(phone):
            return Delivery(self.name, phone, False, "not a phone number")
        if not recipient.electronic_consent:
            return _no_consent(self.name, phone)
        if len(message.text) > self.max_chars:
            return Delivery(self.name, phone, False, f"text of {len(message.text)} characters "
                            f"is longer than an SMS here ({self.max_chars})")
        now = datetime.now(UTC)
        path = self.folder / f"{now:%Y%m%dT%H%M%S%fZ}-case{message.case_id}-" \
                             f"{uuid.uuid4().hex[:8]}.json"
        body = {"to": phone, "text": message.text, "case_id": message.case_id,
                "kind": message.kind}
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, json.dumps(body, ensure_ascii=False).encode("utf-8"))
        except OSError as exc:
            return Delivery(self.name, phone, False, _one_line(
                f"cannot write to the SMS folder: {exc.strerror or exc}"))
        return Delivery(self.name, phone, True, f"handed to the SMS folder as {path.name} "
                        "(test channel: no gateway here)", at=now)


# Settings and the notifier ----------------------------------------------------------------


class LetterSettings(BaseModel):
    """Where letter batches are written for printing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: Path = Field(Path("letters"), description="batch folders, one per day")


class SmsSettings(BaseModel):
    """Where the SMS test channel writes its messages, and the longest text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    folder: Path = Field(Path("sms-outbox"), description="one JSON file per message")
    max_chars: count(670, "ten parts of 67 Chinese characters, a long SMS of several "
                     "parts") = Field(70, description="the longest text sent (70 Chinese "
                                      "characters fit one SMS)")


ChannelName = Literal["email", "sms", "letter"]


class NotifySettings(BaseModel):
    """The channels to try, in order, and each one's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    channels: list[ChannelName] = Field(["letter"], min_length=1, max_length=3,
                                        description="the channels tried in order until one "
                                        "succeeds")
    email: EmailSettings | None = None
    letter: LetterSettings = Field(default_factory=LetterSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)

    @field_validator("channels")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        """A channel tried twice would only repeat its failure."""
        twice = sorted({c for c in value if value.count(c) > 1})
        if twice:
            raise ValueError(f"names {', '.join(twice)} more than once (got {value!r})")
        return value

    @model_validator(mode="after")
    def _email_set(self) -> "NotifySettings":
        """The e-mail channel cannot run without its server."""
        if "email" in self.channels and self.email is None:
            raise ValueError("channels name email, but there is no email section "
                             "(host, port, sender)")
        return self


def load_notify_settings(path: Path) -> NotifySettings:
    """Read and validate notifier settings from a YAML file (errors name file and key)."""
    return load_model(path, NotifySettings, NotifyError)


class Notifier:
    """Tries channels in order until one succeeds; every attempt is returned."""

    def __init__(self, channels: Sequence[Channel]) -> None:
        if not channels:
            raise ValueError("a notifier needs at least one channel")
        self.channels = tuple(channels)

    def deliver(self, message: Message, recipient: Recipient) -> list[Delivery]:
        """Every attempt, in order; the last is the success when there is one."""
        attempts = []
        for channel in self.channels:
            delivery = channel.send(message, recipient)
            attempts.append(delivery)
            if delivery.ok:
                break
        return attempts


def undeliverable(deliveries: Sequence[Delivery]) -> bool:
    """True when no attempt succeeded: the procedure turns to service by public notice
    (公告送达).

    Examples
    --------
    >>> undeliverable([Delivery("email", "", False, "no e-mail address")])
    True
    >>> undeliverable([])
    True
    """
    return not any(d.ok for d in deliveries)


def build_notifier(settings: NotifySettings, base_dir: Path) -> Notifier:
    """The notifier the settings describe; relative paths are taken from ``base_dir`` (the
    settings file's folder). The e-mail password is read now: NotifyError if it cannot be."""
    base_dir = Path(base_dir)

    def here(p: Path) -> Path:
        return p if p.is_absolute() else base_dir / p

    made: dict[str, Callable[[], Channel]] = {
        "letter": lambda: LetterBatchChannel(here(settings.letter.folder)),
        "sms": lambda: SmsFolderChannel(here(settings.sms.folder), settings.sms.max_chars),
        "email": lambda: _email_channel(settings.email, base_dir),
    }
    return Notifier([made[name]() for name in settings.channels])


def _email_channel(settings: EmailSettings | None, base_dir: Path) -> EmailChannel:
    """The e-mail channel with its password read and its CA file found from ``base_dir``."""
    assert settings is not None  # NotifySettings requires the section with the channel
    if settings.ca_file is not None and not settings.ca_file.is_absolute():
        settings = settings.model_copy(update={"ca_file": base_dir / settings.ca_file})
    if settings.ca_file is not None and not settings.ca_file.is_file():
        raise NotifyError(f"option 'email.ca_file': no such file {settings.ca_file}")
    return EmailChannel(settings, read_password(settings, base_dir))
