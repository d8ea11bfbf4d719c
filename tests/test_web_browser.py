"""The center's pages in a real browser: Debian's Chromium, headless, driven by Selenium
through Debian's chromedriver, against the app served by uvicorn on 127.0.0.1.

One walk, as the people who use the pages would take it, each step a test in order: an
officer logs in, opens a case from the queue with the keyboard (j, Enter) and reviews
it; a second officer approves it and notifies the party; an officer keys in the plate of
a capture the reader missed; anyone sees every device on the public map; the owner looks
the case up with the code printed on the notice and submits a defence, which the staff
case page then shows. Last, ``zhichao demo`` runs and serves its center's pages: an
officer logs in with the log-in it printed and reviews a demo case there. A screenshot of
every page is kept as a PNG in $ZHICHAO_SCREENSHOTS (default build/screenshots/).

Skipped, with the reason, only where Chromium or chromedriver is not installed.
"""

import base64
import hashlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from center_factory import T0, make_packet
from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from web_factory import PASSWORD, WebCenter, photo, web_center

from center.cases import process_pending
from center.db import make_engine
from center.ingest_models import StoredPacket
from center.law_models import Capture, Case, CaseCapture, DeviceRecord
from center.procedure_models import CaseDocument, CaseProcedure, CaseStep
from center.web.serve import make_server
from center.web_models import OwnerStatement, PlateEntry
from evidence.packet import ImageRef, canonical_bytes, packet_hash

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 10.0
"""The longest any one wait of the walk may take."""
FILE_BOUND_S = 120.0
"""The whole file's bound: a walk slower than this fails, it does not hang."""
SHOT_MAX_PX = 2400
"""The tallest screenshot kept, in pixels."""
ROOT = Path(__file__).resolve().parent.parent
UNREAD_PLATE = "浙C24680"
DEFENCE = "车辆当日刚更换轮胎，称重前已卸货一部分，请求复核。"

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(f"needs Debian's chromium ({CHROMIUM}) and chromium-driver ({CHROMEDRIVER}); "
                "`make system` installs them", allow_module_level=True)

from selenium import webdriver  # noqa: E402 (only once the browser is known to be there)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.timeout(FILE_BOUND_S / 2)


def screenshots_dir() -> Path:
    folder = Path(os.environ.get("ZHICHAO_SCREENSHOTS") or ROOT / "build" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_unread_capture(center: WebCenter) -> int:
    """A pass whose plate nobody read (a heavy 6-axle truck): a capture, no case. Its id."""
    jpeg = photo(9, "C24680")
    packet = make_packet(plate=None, gross_kg=61_200, sequence=4,
                         captured_at=T0 + timedelta(days=5))
    ref = ImageRef(role="front", sha256=hashlib.sha256(jpeg).hexdigest(), size=len(jpeg))
    packet = packet.model_copy(update={"images": [ref]})
    meta = canonical_bytes(packet)
    with center.engine.begin() as conn:
        conn.execute(insert(StoredPacket).values(
            device_id=packet.device_id, sequence=packet.sequence, hash=packet_hash(meta),
            previous_hash=packet.previous_hash, captured_at=packet.captured_at, lane=1,
            suspected_overload=True, meta=meta, signature=b"s", received_at=T0))
    path = center.settings.images_dir / ref.sha256[:2] / ref.sha256
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg)
    process_pending(center.engine, center.settings)
    with Session(center.engine) as s:
        capture = s.scalar(select(Capture).order_by(Capture.id.desc()))
        assert capture is not None and not capture.plate
        return capture.id


class Walk:
    """The browser, the served center and what the steps learn on the way."""

    def __init__(self, center: WebCenter, base: str, driver: webdriver.Chrome,
                 shots: Path) -> None:
        self.center, self.base, self.driver, self.shots = center, base, driver, shots
        self.case_id: int | None = None
        self.unread_capture: int | None = None
        self.defended = False

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def wait(self, condition):
        return WebDriverWait(self.driver, WAIT_S).until(condition)

    def shot(self, name: str) -> Path:
        """A PNG of the whole page as it stands (at most SHOT_MAX_PX high), through the
        DevTools protocol: a window-sized shot would cut the case page at its photos."""
        path = self.shots / f"{name}.png"
        width, height = self.driver.execute_script(
            "const e = document.documentElement;"
            "return [e.clientWidth, Math.max(e.scrollHeight, e.clientHeight)];")
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": min(height, SHOT_MAX_PX),
                     "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def page_ok(self) -> None:
        """The page is not an error page (a refused or failed request)."""
        title = self.driver.title
        assert "Internal Server Error" not in self.driver.page_source, title
        assert not self.driver.find_elements(By.CSS_SELECTOR, "body > pre"), \
            self.driver.page_source[:300]

    def log_in(self, officer: str) -> None:
        """Log out whoever is in, then log in as ``officer`` through the form."""
        self.driver.delete_all_cookies()
        self.open("/staff/login")
        self.wait(ec.presence_of_element_located((By.NAME, "officer_id")))
        self.driver.find_element(By.NAME, "officer_id").send_keys(officer)
        self.driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        self.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        self.wait(ec.url_matches(r"/staff/?$"))

    def submit(self, form_id: str, fields: dict[str, str] | None = None) -> None:
        """Fill and submit the form of that id, and wait for the next page."""
        form = self.wait(ec.presence_of_element_located((By.ID, form_id)))
        for name, value in (fields or {}).items():
            box = form.find_element(By.NAME, name)
            box.clear()
            box.send_keys(value)
        button = form.find_element(By.CSS_SELECTOR, "button[type=submit], button")
        button.click()
        self.wait(ec.staleness_of(button))

    def rows(self, model, **where) -> list:
        with Session(self.center.engine) as s:
            return list(s.scalars(select(model).filter_by(**where)))


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """The test center served on a free port, a headless Chromium on it; both stopped at
    the end, whatever happened."""
    started = time.monotonic()
    folder = tmp_path_factory.mktemp("web-browser")
    center = web_center(f"sqlite:///{folder / 'center.db'}", folder)
    unread = add_unread_capture(center)
    port = free_port()
    server = make_server(center.settings, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, name="web-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the web server did not start"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1360,900", "--lang=zh-CN", "--no-first-run",
                "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    w = Walk(center, f"http://127.0.0.1:{port}", driver, screenshots_dir())
    w.unread_capture = unread
    try:
        yield w
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=WAIT_S)
        center.client.close()
        center.engine.dispose()
        took = time.monotonic() - started
        print({"browser walk s": round(took, 1), "screenshots": str(w.shots)})
    assert not thread.is_alive(), "the web server did not stop"
    assert took < FILE_BOUND_S, f"the walk took {took:.0f} s"


def test_an_officer_logs_in_and_sees_the_queue(walk):
    walk.open("/staff/login")
    walk.wait(ec.presence_of_element_located((By.NAME, "officer_id")))
    walk.shot("01-staff-login")
    walk.log_in("ZF001")
    rows = walk.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "tbody tr[data-href]"))
    assert len(rows) == 3, [r.text for r in rows]
    walk.page_ok()
    walk.shot("02-staff-queue")


def test_the_keyboard_opens_a_case_and_the_officer_reviews_it(walk):
    walk.open("/staff")
    rows = walk.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "tbody tr[data-href]"))
    second = rows[1].get_attribute("data-href")
    body = walk.driver.find_element(By.TAG_NAME, "body")
    body.send_keys("j")
    walk.wait(lambda d: "current" in (rows[1].get_attribute("class") or ""))
    body.send_keys(Keys.ENTER)
    walk.wait(ec.url_to_be(walk.base + second))
    walk.case_id = int(second.rsplit("/", 1)[1])
    walk.wait(ec.presence_of_element_located((By.ID, "review")))
    walk.page_ok()
    walk.shot("03-staff-case")
    walk.submit("review", {"note": "照片清晰，号牌与车型一致"})
    steps = walk.rows(CaseStep, case_id=walk.case_id, step="review")
    assert [s.officer_id for s in steps] == ["ZF001"]
    walk.shot("04-staff-case-reviewed")


def test_c_on_a_case_page_puts_the_cursor_in_the_review_form(walk):
    """The review tool's key: c, then the note typed at once."""
    waiting = [c.id for c in walk.rows(Case, status="awaiting_review")]
    walk.open(f"/staff/cases/{waiting[0]}")
    walk.wait(ec.presence_of_element_located((By.ID, "review")))
    walk.driver.find_element(By.TAG_NAME, "body").send_keys("c")
    inside = walk.driver.execute_script(
        "const a = document.activeElement;"
        "return !!a.closest('#review') && a.type !== 'hidden';")
    assert inside, walk.driver.switch_to.active_element.get_attribute("outerHTML")


def test_a_second_officer_approves_and_notifies(walk):
    if walk.case_id is None:
        pytest.skip("needs the reviewed case of the step before")
    walk.log_in("ZF002")
    walk.open(f"/staff/cases/{walk.case_id}")
    walk.submit("approve", {"note": "同意立案"})
    assert walk.rows(CaseProcedure, case_id=walk.case_id), "the case was not filed"
    walk.submit("notify")
    (rec,) = walk.rows(CaseProcedure, case_id=walk.case_id)
    assert rec.notified_on is not None and rec.defence_until is not None
    walk.page_ok()
    walk.shot("05-staff-case-notified")


def test_an_officer_keys_in_a_plate_the_reader_missed(walk):
    walk.log_in("ZF002")
    walk.open(f"/staff/captures/{walk.unread_capture}")
    walk.wait(ec.presence_of_element_located((By.ID, "plate")))
    walk.page_ok()
    walk.shot("06-staff-capture-unread")
    walk.submit("plate", {"plate": UNREAD_PLATE})
    (entry,) = walk.rows(PlateEntry, capture_id=walk.unread_capture)
    assert (entry.plate, entry.officer_id) == (UNREAD_PLATE, "ZF002")
    case = walk.rows(CaseCapture, capture_id=walk.unread_capture)
    assert case, "a 61.2 t six-axle truck with its plate keyed in opens a case"
    assert walk.driver.current_url.endswith(f"/staff/cases/{case[0].case_id}")
    walk.shot("07-staff-case-from-keyed-plate")


def test_the_public_map_shows_every_device(walk):
    walk.driver.delete_all_cookies()
    walk.open("/map")
    markers = walk.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-device-id]"))
    shown = {m.get_attribute("data-device-id") for m in markers}
    assert shown == {"D1", "D2"}, shown
    walk.page_ok()
    walk.shot("08-public-map")
    walk.open("/devices")
    walk.wait(lambda d: "D2" in d.page_source)
    walk.shot("09-public-devices")
    walk.open("/benchmark")
    walk.page_ok()
    walk.shot("10-public-benchmark")


def test_the_owner_looks_the_case_up_and_submits_a_defence(walk):
    if walk.case_id is None or not walk.rows(CaseProcedure, case_id=walk.case_id):
        pytest.skip("needs the notified case of the steps before")
    (notice,) = walk.rows(CaseDocument, case_id=walk.case_id, kind="notice")
    code = notice.facts.get("lookup_code")
    assert code, "the notice carries no look-up code"
    (case_plate,) = {c.plate for c in walk.rows(Capture) if any(
        cc.capture_id == c.id for cc in walk.rows(CaseCapture, case_id=walk.case_id))}
    walk.driver.delete_all_cookies()
    walk.open("/case")
    walk.wait(ec.presence_of_element_located((By.NAME, "code")))
    walk.shot("11-owner-lookup")
    walk.driver.find_element(By.NAME, "plate").send_keys(case_plate)
    walk.driver.find_element(By.NAME, "code").send_keys(code)
    walk.driver.find_element(By.CSS_SELECTOR, "form.owner-lookup button").click()
    walk.wait(ec.url_contains("/case/view"))
    walk.page_ok()
    walk.shot("12-owner-case")
    form = walk.driver.find_element(By.CSS_SELECTOR, "form.owner-statement")
    form.find_element(By.NAME, "text").send_keys(DEFENCE)
    letter = walk.center.folder / "defence.pdf"
    letter.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    form.find_element(By.NAME, "files").send_keys(str(letter))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    walk.wait(ec.url_contains("sent=1"))
    (statement,) = walk.rows(OwnerStatement, case_id=walk.case_id)
    assert statement.text == DEFENCE
    walk.shot("13-owner-defence-sent")
    walk.defended = True


def test_the_defence_shows_on_the_staff_case_page(walk):
    if not walk.defended:
        pytest.skip("needs the owner's defence of the step before")
    walk.log_in("ZF001")
    walk.open(f"/staff/cases/{walk.case_id}")
    walk.wait(lambda d: DEFENCE in d.page_source)
    walk.page_ok()
    walk.shot("14-staff-case-with-defence")


def test_every_step_left_a_screenshot(walk):
    shots = sorted(p.name for p in walk.shots.glob("*.png"))
    assert len(shots) >= 10, shots
    assert all((walk.shots / s).stat().st_size > 5_000 for s in shots)


# --- the demo's pages ----------------------------------------------------------------------

DEMO_SECONDS = 5
"""Seconds of simulated traffic: enough for a case or two on a busy road."""
DEMO_BOUND_S = 75.0


def read_until(proc: subprocess.Popen, lines: "queue.Queue[str]", marker: str,
               bound_s: float) -> str:
    """The demo's output up to the line holding ``marker`` (bounded in time)."""
    seen: list[str] = []
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"no {marker!r} within {bound_s:.0f} s: " + "".join(seen)[-1500:])


@pytest.mark.timeout(DEMO_BOUND_S + 15)
def test_the_demo_serves_its_pages_and_its_cases_are_reviewed_there(walk, tmp_path):
    """``zhichao demo`` ends serving its center's pages with printed log-ins: an officer
    logs in with one and reviews a demo case in the browser; Ctrl-C stops it cleanly."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhichao.cli", "demo", "--seconds", str(DEMO_SECONDS),
         "--flow", "3000", "--overloaded-share", "0.7", "--web-port", str(port),
         "--keep", str(tmp_path / "demo")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
        start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        out = read_until(proc, lines, "Ctrl-C stops", DEMO_BOUND_S - 15)
        password = re.search(r"ZF001\s*│[^│]*│[^│]*│\s*(\S+)\s*│", out).group(1)
        assert f"http://127.0.0.1:{port}/staff" in out
        walk.driver.delete_all_cookies()
        walk.driver.get(f"http://127.0.0.1:{port}/staff/login")
        walk.wait(ec.presence_of_element_located((By.NAME, "officer_id")))
        walk.driver.find_element(By.NAME, "officer_id").send_keys("ZF001")
        walk.driver.find_element(By.NAME, "password").send_keys(password)
        walk.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        walk.wait(ec.url_matches(r"/staff/?$"))
        rows = walk.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "tbody tr[data-href]"))
        walk.shot("15-demo-queue")
        first = rows[0].get_attribute("data-href")
        walk.driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ENTER)
        walk.wait(ec.url_matches(re.escape(first) + "$"))
        walk.shot("16-demo-case")
        walk.submit("review", {"note": "demo case reviewed in the browser"})
        walk.shot("17-demo-case-reviewed")
        walk.driver.get(f"http://127.0.0.1:{port}/map")
        markers = walk.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-device-id]"))
        shown = {m.get_attribute("data-device-id") for m in markers}
        walk.shot("18-demo-map")
        engine = make_engine(str(tmp_path / "demo" / "center.db"))
        try:
            with Session(engine) as s:
                steps = list(s.scalars(select(CaseStep).where(CaseStep.step == "review")))
                devices = set(s.scalars(select(DeviceRecord.device_id)))
        finally:
            engine.dispose()
        assert [(st.case_id, st.officer_id) for st in steps] == \
            [(int(first.rsplit("/", 1)[1]), "ZF001")]
        assert devices and shown == devices  # every demo device on the public map
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    rest = ""
    while not lines.empty():
        rest += lines.get()
    assert proc.returncode == 0, rest[-1500:]
    assert "stopped serving the pages" in rest
