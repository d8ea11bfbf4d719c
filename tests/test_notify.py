"""The notifier against real parts: a real SMTP server (aiosmtpd on 127.0.0.1, with a
refused mailbox, STARTTLS and a login), real folders for the letter batch and for the SMS
test channel, and settings files read as a center reads them."""

import csv
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from hashlib import sha256
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from center.notify import (
    Attachment,
    Delivery,
    EmailChannel,
    EmailSettings,
    LetterBatchChannel,
    Message,
    Notifier,
    NotifyError,
    NotifySettings,
    Recipient,
    SmsFolderChannel,
    build_notifier,
    load_notify_settings,
    undeliverable,
)

pytestmark = pytest.mark.timeout(30)

REFUSED = "nobody@wuliu.example.cn"
PDF = b"%PDF-1.7\n% test document\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
SUBJECT = "违法行为通知书 浙A12345 (案件 7)"
OWNER = Recipient("杭州某物流有限公司", email="owner@wuliu.example.cn", phone="138 0000 1234",
                  address="浙江省杭州市西湖区文三路 1 号", electronic_consent=True)


def notice(case_id: int = 7, text: str = "请查收违法行为通知书。") -> Message:
    """A notice with one PDF document, Chinese subject and file name."""
    return Message(case_id, "notice", SUBJECT, text,
                   (Attachment("违法行为通知书-7.pdf", PDF, "application/pdf"),))


class Inbox:
    """An SMTP handler that keeps what it accepts and refuses one mailbox with 550."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        """550 for the refused mailbox, else accept."""
        if address == REFUSED:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        """Keep the message as received."""
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    """A plain SMTP server on 127.0.0.1: its inbox and port."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), ready_timeout=5)
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    """An SMTP server that requires STARTTLS and a login (zhifa / the password below):
    its inbox, port and certificate (to trust as the CA file)."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
        return AuthResult(success=(auth_data.login, auth_data.password)
                          == (b"zhifa", b"mima-s3cret"), handled=False)

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), ready_timeout=5,
                            tls_context=context, require_starttls=True,
                            authenticator=check, auth_require_tls=True)
    controller.start()
    try:
        yield inbox, controller.port, cert
    finally:
        controller.stop()


def email_channel(port: int, **options) -> EmailChannel:
    """A channel to the server on 127.0.0.1:port."""
    settings = EmailSettings(host="127.0.0.1", port=port, sender="zhifa@jiaotong.example.cn",
                             timeout_s=options.pop("timeout_s", 5.0), helo_name="center",
                             **options)
    return EmailChannel(settings)


def parsed(raw: bytes) -> EmailMessage:
    """A received message, parsed with the modern policy (headers decoded)."""
    return message_from_bytes(raw, policy=policy.default)


# E-mail -----------------------------------------------------------------------------------


def test_a_notice_is_delivered_as_mime_with_chinese_subject_and_the_pdf(smtp_server) -> None:
    inbox, port = smtp_server
    delivery = email_channel(port).send(notice(), OWNER)
    assert delivery.ok, delivery.detail
    assert (delivery.channel, delivery.address) == ("email", OWNER.email)
    assert delivery.at.tzinfo is not None and delivery.at.utcoffset() == timedelta(0)
    assert len(inbox.received) == 1
    mail_from, rcpt, raw = inbox.received[0]
    assert (mail_from, rcpt) == ("zhifa@jiaotong.example.cn", [OWNER.email])
    assert raw.isascii(), "headers and body go 7-bit: any server takes them"
    mail = parsed(raw)
    assert mail["Subject"] == SUBJECT
    assert mail["To"].addresses[0].display_name == OWNER.name
    assert mail["X-Case-Id"] == "7"
    assert "请查收违法行为通知书" in mail.get_body(("plain",)).get_content()
    attachments = list(mail.iter_attachments())
    assert [(a.get_filename(), a.get_content_type()) for a in attachments] == \
        [("违法行为通知书-7.pdf", "application/pdf")]
    assert attachments[0].get_content() == PDF


def test_a_refused_recipient_is_not_delivered_and_says_refused(smtp_server) -> None:
    inbox, port = smtp_server
    party = Recipient("某运输户", email=REFUSED, electronic_consent=True)
    delivery = email_channel(port).send(notice(), party)
    assert not delivery.ok
    assert "refused recipient" in delivery.detail and "550" in delivery.detail
    assert "\n" not in delivery.detail
    assert inbox.received == []


def test_a_server_that_is_down_fails_quickly() -> None:
    start = time.monotonic()
    delivery = email_channel(free_port(), timeout_s=2.0).send(notice(), OWNER)
    assert time.monotonic() - start < 2.0
    assert not delivery.ok and delivery.detail.startswith("server down"), delivery.detail


def test_a_silent_server_times_out_within_the_bound() -> None:
    with socket.socket() as listener:  # the kernel completes the connection; no banner ever
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        start = time.monotonic()
        delivery = email_channel(listener.getsockname()[1], timeout_s=0.5).send(notice(), OWNER)
        elapsed = time.monotonic() - start
    assert not delivery.ok and delivery.detail.startswith("timeout"), delivery.detail
    assert 0.4 < elapsed < 3.0


def test_starttls_and_login_with_the_password_from_a_file(tls_server, tmp_path) -> None:
    inbox, port, _ = tls_server
    (tmp_path / "smtp.pass").write_text("mima-s3cret\n", encoding="utf-8")
    settings_file = tmp_path / "notify.yaml"
    settings_file.write_text(
        "channels: [email]\n"
        f"email: {{host: 127.0.0.1, port: {port}, sender: zhifa@jiaotong.example.cn,\n"
        "        starttls: true, ca_file: server.pem, username: zhifa,\n"
        "        password_file: smtp.pass, timeout_s: 5, helo_name: center}\n",
        encoding="utf-8")
    notifier = build_notifier(load_notify_settings(settings_file), tmp_path)
    assert "s3cret" not in repr(notifier.channels[0])
    deliveries = notifier.deliver(notice(), OWNER)
    assert [d.ok for d in deliveries] == [True], deliveries
    assert len(inbox.received) == 1
    assert parsed(inbox.received[0][2])["Subject"] == SUBJECT


def test_a_wrong_password_from_the_environment_is_a_refused_login(
        tls_server, tmp_path, monkeypatch) -> None:
    inbox, port, cert = tls_server
    monkeypatch.setenv("ZHICHAO_TEST_SMTP_PASSWORD", "wrong")
    settings = NotifySettings(channels=["email"], email={
        "host": "127.0.0.1", "port": port, "sender": "zhifa@jiaotong.example.cn",
        "starttls": True, "ca_file": str(cert), "username": "zhifa",
        "password_env": "ZHICHAO_TEST_SMTP_PASSWORD", "timeout_s": 5})
    [delivery] = build_notifier(settings, tmp_path).deliver(notice(), OWNER)
    assert not delivery.ok and "refused the login of zhifa" in delivery.detail
    assert "wrong" not in delivery.detail
    assert inbox.received == []


def test_a_server_certificate_not_trusted_fails_the_attempt(tls_server) -> None:
    inbox, port, _ = tls_server
    channel = email_channel(port, starttls=True)  # the system's CAs: self-signed not trusted
    delivery = channel.send(notice(), OWNER)
    assert not delivery.ok and "STARTTLS" in delivery.detail, delivery.detail
    assert inbox.received == []


# Falling through ----------------------------------------------------------------------------


def test_no_email_falls_through_to_the_letter(smtp_server, tmp_path) -> None:
    inbox, port = smtp_server
    settings = NotifySettings(channels=["email", "letter"], letter={"folder": "post"},
                              email={"host": "127.0.0.1", "port": port,
                                     "sender": "zhifa@jiaotong.example.cn"})
    party = Recipient("张三", email=None, phone=None, address="河南省郑州市金水路 2 号")
    deliveries = build_notifier(settings, tmp_path).deliver(notice(), party)
    assert [(d.channel, d.ok) for d in deliveries] == [("email", False), ("letter", True)]
    assert deliveries[0].detail == "no e-mail address for this recipient"
    assert "posted by staff" in deliveries[1].detail
    assert not undeliverable(deliveries)
    assert len(list((tmp_path / "post").glob("*/*.pdf"))) == 1
    assert inbox.received == []


def test_an_email_without_consent_is_not_used_for_service(smtp_server, tmp_path) -> None:
    inbox, port = smtp_server
    party = Recipient("李四", email="lisi@example.cn", address="浙江省宁波市 3 号")
    notifier = Notifier([email_channel(port), LetterBatchChannel(tmp_path)])
    deliveries = notifier.deliver(notice(), party)
    assert [(d.channel, d.ok) for d in deliveries] == [("email", False), ("letter", True)]
    assert "Art. 61" in deliveries[0].detail
    assert inbox.received == []


def test_the_first_success_ends_the_attempts(smtp_server, tmp_path) -> None:
    inbox, port = smtp_server
    notifier = Notifier([email_channel(port), LetterBatchChannel(tmp_path / "post")])
    deliveries = notifier.deliver(notice(), OWNER)
    assert [(d.channel, d.ok) for d in deliveries] == [("email", True)]
    assert len(inbox.received) == 1
    assert not (tmp_path / "post").exists()


def test_no_channel_reaching_the_party_means_public_notice(tmp_path) -> None:
    settings = NotifySettings(channels=["sms", "letter"])
    party = Recipient("王五")
    deliveries = build_notifier(settings, tmp_path).deliver(notice(), party)
    assert [(d.channel, d.ok, d.detail) for d in deliveries] == [
        ("sms", False, "no phone number for this recipient"),
        ("letter", False, "no postal address for this recipient")]
    assert undeliverable(deliveries)
    assert undeliverable([]) and not undeliverable([Delivery("letter", "x", True, "written")])


# Letter batch -----------------------------------------------------------------------------


def test_letter_batch_writes_the_pdfs_and_a_spreadsheet_safe_manifest(tmp_path) -> None:
    late_evening_utc = datetime(2026, 12, 5, 17, 0, tzinfo=UTC)  # 01:00 on the 6th in China
    channel = LetterBatchChannel(tmp_path, clock=lambda: late_evening_utc)
    party = Recipient("=HYPERLINK(\"http://x\",\"点击\")", address="-浙江省杭州市 1 号")
    second = Message(7, "notice", SUBJECT, "", (Attachment("../../etc/x.pdf", PDF + b"2"),))
    first, again = channel.send(notice(), party), channel.send(second, party)
    assert first.ok and again.ok and "not yet delivered" in first.detail
    assert first.at == late_evening_utc
    batch = tmp_path / "2026-12-06"
    pdfs = sorted(p.name for p in batch.glob("*.pdf"))
    assert pdfs == ["case7-notice-1-x.pdf", "case7-notice-1-违法行为通知书-7.pdf"]
    assert (batch / pdfs[1]).read_bytes() == PDF
    raw = (batch / "manifest.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0] == ["recipient", "postal_address", "case_id", "kind", "file", "sha256"]
    assert rows[1] == ["'=HYPERLINK(\"http://x\",\"点击\")", "'-浙江省杭州市 1 号", "7", "notice",
                       pdfs[1], sha256(PDF).hexdigest()]
    assert rows[2][4:] == [pdfs[0], sha256(PDF + b"2").hexdigest()]
    assert len(rows) == 3


def test_a_letter_needs_an_address_and_a_pdf(tmp_path) -> None:
    channel = LetterBatchChannel(tmp_path)
    no_address = channel.send(notice(), Recipient("张三", address="  "))
    assert not no_address.ok and no_address.detail == "no postal address for this recipient"
    html = Message(7, "notice", SUBJECT, "", (Attachment("n.html", b"<p>", "text/html"),))
    not_pdf = channel.send(html, Recipient("张三", address="郑州"))
    assert not not_pdf.ok and "not a PDF" in not_pdf.detail
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_batch_folder_is_a_failed_attempt(tmp_path) -> None:
    blocker = tmp_path / "letters"
    blocker.write_text("a file where the folder should be")
    delivery = LetterBatchChannel(blocker).send(notice(), OWNER)
    assert not delivery.ok and delivery.detail.startswith("cannot write the letter batch")


# SMS ------------------------------------------------------------------------------------


def test_sms_test_channel_writes_one_json_file_per_message(tmp_path) -> None:
    """SmsFolderChannel is the test channel standing in for an SMS gateway, which cannot run
    here: ok means a file in the folder, never a phone reached."""
    channel = SmsFolderChannel(tmp_path / "sms", max_chars=70)
    delivery = channel.send(notice(text="您的车辆浙A12345有一条超限违法记录，请查收通知书。"),
                            OWNER)
    assert delivery.ok and "test channel" in delivery.detail
    [file] = (tmp_path / "sms").iterdir()
    assert json.loads(file.read_text(encoding="utf-8")) == {
        "to": "138 0000 1234", "text": "您的车辆浙A12345有一条超限违法记录，请查收通知书。",
        "case_id": 7, "kind": "notice"}
    too_long = channel.send(notice(text="字" * 71), OWNER)
    assert not too_long.ok and "71 characters" in too_long.detail
    no_phone = channel.send(notice(), Recipient("张三", electronic_consent=True))
    assert not no_phone.ok and no_phone.detail == "no phone number for this recipient"
    no_consent = channel.send(notice(), Recipient("张三", phone="13800001234"))
    assert not no_consent.ok and "consent" in no_consent.detail
    assert len(list((tmp_path / "sms").iterdir())) == 1


# Settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "says"), [
    ("channels: [email]\nemail: {host: mail.example.cn, port: 70000, sender: a@b.cn}\n",
     "option 'email.port' must be at most 65535"),
    ("channels: [email, fax]\nemail: {host: mail.example.cn, sender: a@b.cn}\n",
     "option 'channels.1' must be 'email', 'sms' or 'letter' (got 'fax')"),
    ("channels: [letter]\nletter: {folder: post, colour: red}\n",
     "option 'letter.colour' is not a known option"),
    ("email: {host: mail.example.cn, sender: a@b.cn, username: u, password: hunter2}\n",
     "option 'email' a password is never written in the settings"),
    ("email: {host: mail.example.cn, sender: a@b.cn, timeout_s: 0}\n",
     "option 'email.timeout_s' must be greater than 0"),
    ("email: {host: mail.example.cn, sender: a@b.cn, timeout_s: 3600}\n",
     "option 'email.timeout_s' must be at most 120 s"),
    ("email: {host: mail.example.cn, sender: not-an-address}\n",
     "option 'email.sender' must be an e-mail address"),
    ("email: {host: mail.example.cn, sender: a@b.cn, username: u, password_env: P}\n",
     "needs starttls: true"),
    ("channels: [email]\n", "channels name email, but there is no email section"),
    ("channels: [letter, letter]\n", "names letter more than once"),
    ("channels: []\n", "option 'channels' list should have at least 1 item"),
    ("sms: {max_chars: 1000}\n", "option 'sms.max_chars' must be at most 670"),
])
def test_settings_errors_name_the_file_and_the_key(tmp_path, text, says) -> None:
    path = tmp_path / "notify.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(NotifyError) as caught:
        load_notify_settings(path)
    assert str(caught.value).startswith(str(path)), caught.value
    assert says in str(caught.value), caught.value
    assert "hunter2" not in str(caught.value)


def test_an_unreadable_password_stops_the_build(tmp_path, monkeypatch) -> None:
    base = {"host": "127.0.0.1", "sender": "a@b.cn", "username": "u"}
    by_file = NotifySettings(channels=["email"], email={**base, "password_file": "none.pass"})
    with pytest.raises(NotifyError, match=r"option 'email.password_file': cannot read"):
        build_notifier(by_file, tmp_path)
    monkeypatch.delenv("ZHICHAO_NO_SUCH_VAR", raising=False)
    by_env = NotifySettings(channels=["email"], email={**base,
                                                       "password_env": "ZHICHAO_NO_SUCH_VAR"})
    with pytest.raises(NotifyError, match=r"ZHICHAO_NO_SUCH_VAR is not set"):
        build_notifier(by_env, tmp_path)
    (tmp_path / "cn.pass").write_text("密码\n", encoding="utf-8")
    not_ascii = NotifySettings(channels=["email"], email={**base, "password_file": "cn.pass"})
    with pytest.raises(NotifyError, match=r"other than ASCII") as caught:
        build_notifier(not_ascii, tmp_path)
    assert "密码" not in str(caught.value)


def test_a_message_with_a_line_break_in_its_subject_is_refused() -> None:
    with pytest.raises(ValueError, match="one non-empty line"):
        Message(7, "notice", "通知书\r\nBcc: x@y.cn", "", ())
    with pytest.raises(ValueError, match="kind"):
        Message(7, "Notice/../", "通知书", "", ())


def test_a_malformed_address_is_a_failed_attempt_not_an_injected_header(smtp_server) -> None:
    inbox, port = smtp_server
    party = Recipient("张三", email="a@b.cn\r\nBcc: spy@x.cn", electronic_consent=True)
    delivery = email_channel(port).send(notice(), party)
    assert not delivery.ok and delivery.detail.startswith("cannot address a message to")
    assert "\n" not in delivery.detail
    assert inbox.received == []
