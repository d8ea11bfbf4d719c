"""Public pages, no log-in: where enforcement devices stand and since when they are
announced (a list, a page per device with its monthly figures, a map drawn offline,
GeoJSON and CSV downloads, an Atom feed of notices), and the benchmark in force in plain
words. Only published fields leave these routes: :data:`PUBLISHED` of a device,
:data:`PUBLISHED_SUSPENSION` of its suspensions, the month figures of
:mod:`center.public_figures`, and the rule tables (which are public law)."""

import csv
import io
import math
import xml.etree.ElementTree as ET
from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from center.cases import law_rules
from center.law_models import DeviceRecord, DeviceSuspension
from center.public_figures import FIGURES, monthly_figures
from center.registry import device_to_dict, is_latest, list_devices
from center.spreadsheet import csv_cell
from center.web.pages import DB, json_text, page, refused, settings_of
from overload import grade
from overload.applied import fmt_num
from overload.errors import RuleError
from overload.tables import Benchmark, Bound, MassBand, TolerancePolicy

router = APIRouter(tags=["public"])

PUBLISHED = ("device_id", "road", "stake", "direction", "latitude", "longitude",
             "notice_date", "notice_document", "notice_url", "enforcement_start", "active",
             "suspensions")
"""The fields of a device the public pages show: where it stands, its notice, its state
(行政处罚法 Art. 41: locations published). Certificates and reviews stay with staff."""
PUBLISHED_SUSPENSION = ("starts", "ends", "reason")
"""The fields of a suspension the public sees: the days the device gave no evidence, and
why."""
MAX_DEVICE_ID = 64
"""A device id is at most this long (the registry's column)."""


def published(device: dict) -> dict:
    """A device as the public may see it."""
    row = {k: device.get(k) for k in PUBLISHED}
    row["suspensions"] = [{k: s.get(k) for k in PUBLISHED_SUSPENSION}
                          for s in device.get("suspensions") or ()]
    return row


def published_devices(session: Session) -> list[dict]:
    """Every registered device (its latest version, active or not) as the public sees it,
    by device id."""
    return [published(device_to_dict(d, s)) for d, s in list_devices(session)]


def _web_address(url: str | None) -> bool:
    """Whether a notice URL may be linked (only http and https: never javascript:)."""
    return bool(url) and url.lower().startswith(("http://", "https://"))


@router.get("/", name="home")
@router.get("/index.json", name="home_json")
def home(request: Request) -> Response:
    return page(request, "public/index.html", {})


@router.get("/devices", name="devices")
@router.get("/devices.json", name="devices_json")
def devices(request: Request, session: DB) -> Response:
    return page(request, "public/devices.html", {"devices": published_devices(session)})


# --- one device -------------------------------------------------------------------------

def _one_device(session: Session, device_id: str) -> dict | None:
    """The device's latest version as the public sees it; None when not registered."""
    record = session.scalars(select(DeviceRecord).where(
        DeviceRecord.device_id == device_id, is_latest())).first()
    if record is None:
        return None
    stops = session.scalars(select(DeviceSuspension).where(
        DeviceSuspension.device_id == device_id).order_by(DeviceSuspension.starts)).all()
    return published(device_to_dict(record, list(stops)))


def _totals(months: list[dict]) -> dict:
    """The sum of every figure over the months shown (month ``all``)."""
    totals: dict[str, Any] = {name: 0 for name in FIGURES}
    totals["month"] = "all"
    for row in months:
        for name in FIGURES[1:]:
            totals[name] += row[name]
    return totals


# The lower decorator registers first: ".json" before "/devices/{id}", which would
# otherwise take "D1.json" for an id.
@router.get("/devices/{device_id}", name="device")
@router.get("/devices/{device_id}.json", name="device_json")
def device(request: Request, session: DB, device_id: str) -> Response:
    """A device's published fields, suspensions and monthly figures."""
    if len(device_id) > MAX_DEVICE_ID:
        return refused(request, 404, f"a device id has at most {MAX_DEVICE_ID} characters")
    found = _one_device(session, device_id)
    if found is None:
        return refused(request, 404, f"no device {device_id!r} in the registry")
    months = [m.to_dict() for m in monthly_figures(session, device_id)]
    return page(request, "public/device.html",
                {"device": found, "months": months, "totals": _totals(months)})


# --- the map ----------------------------------------------------------------------------

MAP_WIDTH = 960
MAP_HEIGHT = 640
"""The map's drawing area (SVG user units)."""
MAP_MARGIN = 0.12
"""Part of the devices' extent added on each side, so no marker sits on the edge."""
MIN_SPAN_DEG = 0.02
"""The least extent drawn (about 2 km): one device alone is not drawn on a point."""
GRID_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
              20.0, 30.0)
"""Graticule spacings in degrees; the finest one giving at most :data:`GRID_LINES`."""
GRID_LINES = 6
LABEL_LEFT_FROM = 0.7
"""A marker this far right (part of the width) has its label on its left, inside the map."""
EMPTY_EXTENT = (118.0, 122.5, 27.0, 31.2)
"""West, east, south, north drawn when no device is registered (Zhejiang)."""


def _extent(rows: list[dict]) -> tuple[float, float, float, float]:
    """West, east, south, north of the devices with a margin (at least MIN_SPAN_DEG)."""
    if not rows:
        return EMPTY_EXTENT
    lons = [r["longitude"] for r in rows]
    lats = [r["latitude"] for r in rows]
    bounds = []
    for low, high in ((min(lons), max(lons)), (min(lats), max(lats))):
        span = max(high - low, MIN_SPAN_DEG)
        mid = (low + high) / 2
        half = span * (0.5 + MAP_MARGIN)
        bounds.append((mid - half, mid + half))
    (west, east), (south, north) = bounds
    return west, east, max(south, -90.0), min(north, 90.0)


def _step(span: float) -> float:
    """The graticule spacing for a span of degrees."""
    return next((s for s in GRID_STEPS if span / s <= GRID_LINES), GRID_STEPS[-1])


def _degrees(value: float, step: float, axis: str) -> str:
    """A graticule label: 120.15°E, 30.2°N."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    hemisphere = {"lon": "EW", "lat": "NS"}[axis][value < 0]
    return f"{abs(value):.{decimals}f}°{hemisphere}"


class Projection:
    """Equirectangular: x proportional to longitude × cos(middle latitude), y to latitude,
    one scale for both, fitted into the drawing area and centred."""

    def __init__(self, west: float, east: float, south: float, north: float) -> None:
        self.k = math.cos(math.radians((south + north) / 2))
        self.scale = min(MAP_WIDTH / ((east - west) * self.k), MAP_HEIGHT / (north - south))
        self.lon0 = (west + east) / 2
        self.lat0 = (south + north) / 2

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        x = MAP_WIDTH / 2 + (lon - self.lon0) * self.k * self.scale
        y = MAP_HEIGHT / 2 - (lat - self.lat0) * self.scale
        return round(x, 1), round(y, 1)

    def lon_at(self, x: float) -> float:
        return self.lon0 + (x - MAP_WIDTH / 2) / (self.k * self.scale)

    def lat_at(self, y: float) -> float:
        return self.lat0 - (y - MAP_HEIGHT / 2) / self.scale


def _graticule(proj: Projection) -> dict[str, Any]:
    """Meridians and parallels across the whole drawing area, each with its label."""
    west, east = proj.lon_at(0), proj.lon_at(MAP_WIDTH)
    north, south = proj.lat_at(0), proj.lat_at(MAP_HEIGHT)
    step = _step(max(east - west, north - south))
    meridians = [{"x": proj.xy(i * step, proj.lat0)[0], "label": _degrees(i * step, step, "lon")}
                 for i in range(math.ceil(west / step), math.floor(east / step) + 1)]
    parallels = [{"y": proj.xy(proj.lon0, i * step)[1], "label": _degrees(i * step, step, "lat")}
                 for i in range(math.ceil(south / step), math.floor(north / step) + 1)]
    return {"step_deg": step, "meridians": meridians, "parallels": parallels}


def map_layout(rows: list[dict]) -> dict[str, Any]:
    """The SVG map's frame (size, extent, graticule) and each device with its place."""
    west, east, south, north = _extent(rows)
    proj = Projection(west, east, south, north)
    frame = {"width": MAP_WIDTH, "height": MAP_HEIGHT, "projection": "equirectangular",
             "west": round(proj.lon_at(0), 6), "east": round(proj.lon_at(MAP_WIDTH), 6),
             "south": round(proj.lat_at(MAP_HEIGHT), 6), "north": round(proj.lat_at(0), 6),
             **_graticule(proj)}
    placed = []
    for row in rows:
        x, y = proj.xy(row["longitude"], row["latitude"])
        placed.append({**row, "x": x, "y": y,
                       "label": f"{row['device_id']} {row['road']} {row['stake']}",
                       "label_side": "left" if x > MAP_WIDTH * LABEL_LEFT_FROM else "right"})
    return {"frame": frame, "devices": placed}


@router.get("/map", name="map")
@router.get("/map.json", name="map_json")
def device_map(request: Request, session: DB) -> Response:
    """Every device on a map drawn here, offline (no base layer, no script)."""
    tiles = settings_of(request).web.tile_url
    layout = map_layout(published_devices(session))
    return page(request, "public/map.html", {**layout, "tiles_configured": bool(tiles)})


# --- downloads --------------------------------------------------------------------------

GEOJSON = "application/geo+json"
ATOM_TYPE = "application/atom+xml"
ATOM = "http://www.w3.org/2005/Atom"
BOM = "\ufeff"
"""UTF-8's byte order mark: a Chinese Excel then reads the CSV as UTF-8, not GBK."""


def geojson(rows: list[dict]) -> dict[str, Any]:
    """A FeatureCollection of the devices as points (longitude, latitude: RFC 7946)."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": r["device_id"],
         "geometry": {"type": "Point", "coordinates": [r["longitude"], r["latitude"]]},
         "properties": r} for r in rows]}


@router.get("/devices.geojson", name="devices_geojson")
def devices_geojson(session: DB) -> Response:
    body = json_text(geojson(published_devices(session)))
    return Response(body.encode("utf-8"), media_type=GEOJSON, headers={
        "Content-Disposition": 'inline; filename="devices.geojson"'})


def _suspension_cell(stops: list[dict]) -> str:
    """Suspensions in the registry's own CSV form: ``FROM..TO reason; FROM.. reason``."""
    return "; ".join(f"{s['starts']}..{s['ends'] or ''} {s['reason']}".strip() for s in stops)


def _csv_value(name: str, value: Any) -> Any:
    if name == "suspensions":
        return _suspension_cell(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return value


def devices_csv(rows: list[dict]) -> bytes:
    """The devices as CSV for a spreadsheet: UTF-8 with its byte order mark, every text
    cell quoted and neutralised where a spreadsheet would take it for a formula."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    writer.writerow(PUBLISHED)
    for row in rows:
        writer.writerow([csv_cell(_csv_value(k, row[k])) for k in PUBLISHED])
    return (BOM + out.getvalue()).encode("utf-8")


@router.get("/devices.csv", name="devices_csv")
def devices_csv_download(session: DB) -> Response:
    return Response(devices_csv(published_devices(session)),
                    media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="devices.csv"'})


def _noticed_at(day: date) -> str:
    """A notice day as an Atom time: its midnight in China Standard Time."""
    return f"{day.isoformat()}T00:00:00+08:00"


def _text(parent: ET.Element, tag: str, text: str, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, attrs)
    node.text = text
    return node


def _entry(feed: ET.Element, row: dict, base: str) -> None:
    """One device's notice as an Atom entry."""
    day = row["notice_date"]
    entry = ET.SubElement(feed, "entry")
    _text(entry, "id", f"urn:zhichao:device:{row['device_id']}:notice:{day.isoformat()}")
    document = row["notice_document"] or "公告 notice"
    _text(entry, "title", f"{row['device_id']} {row['road']} {row['stake']} "
          f"{row['direction']}: {document}")
    _text(entry, "updated", _noticed_at(day))
    page_url = f"{base}/devices/{row['device_id']}"
    if _web_address(row["notice_url"]):
        ET.SubElement(entry, "link", {"rel": "alternate", "href": row["notice_url"]})
        ET.SubElement(entry, "link", {"rel": "related", "href": page_url})
    else:
        ET.SubElement(entry, "link", {"rel": "alternate", "href": page_url})
    start = row["enforcement_start"]
    _text(entry, "summary", f"{row['road']} {row['stake']} {row['direction']} "
          f"({row['latitude']}, {row['longitude']}): {document}, {day.isoformat()}; "
          f"enforcement from {start.isoformat() if start else '—'}")


def notices_feed(rows: list[dict], base: str, authority: str) -> bytes:
    """An Atom feed (RFC 4287) of the devices' public notices, newest first, one entry
    per device with a notice date; built as a tree, so it is well-formed whatever a road
    name holds."""
    noticed = sorted((r for r in rows if r["notice_date"]),
                     key=lambda r: (r["notice_date"], r["device_id"]), reverse=True)
    feed = ET.Element("feed", {"xmlns": ATOM, "xml:lang": "zh-CN"})
    _text(feed, "id", "urn:zhichao:notices")
    _text(feed, "title", f"{authority} · 非现场超限检测设备公告 device notices")
    newest = noticed[0]["notice_date"] if noticed else date(2000, 1, 1)
    _text(feed, "updated", _noticed_at(newest))
    ET.SubElement(ET.SubElement(feed, "author"), "name").text = authority
    ET.SubElement(feed, "link", {"rel": "self", "href": f"{base}/notices.atom"})
    ET.SubElement(feed, "link", {"rel": "alternate", "href": f"{base}/devices"})
    for row in noticed:
        _entry(feed, row, base)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


@router.get("/notices.atom", name="notices_atom")
def notices_atom(request: Request, session: DB) -> Response:
    base = str(request.base_url).rstrip("/")
    authority = settings_of(request).procedure.authority.name
    return Response(notices_feed(published_devices(session), base, authority),
                    media_type=ATOM_TYPE)


# --- the benchmark in force ---------------------------------------------------------------

EXAMPLE_CODE = "157"
"""The worked example's vehicle: a six-axle articulated combination (limit 49 t)."""
EXAMPLE_MASSES_KG = (49_000, 49_800, 50_500, 55_400, 63_700, 80_000, 120_000)
"""Gross masses of the worked example: at the limit, within each band, above the cap."""
ACTIONS = {"none": "不处罚 nothing", "education": "批评教育 criticism and education, no penalty",
           "warning": "警告 warning", "fine": "罚款 fine"}
APPLIES = {"whole_excess": "on the whole excess", "band_part": "on the part of the excess "
           "within this band"}


def _edge(bound: Bound | None) -> str | None:
    """A band edge in words: '1 000 kg' or '20 % of the limit'."""
    if bound is None:
        return None
    if bound.kg is not None:
        return f"{fmt_num(bound.kg)} kg"
    return f"{fmt_num(bound.value * 100)} % of the limit"


def _band(band: MassBand) -> dict[str, Any]:
    """A mass band in plain words, with its source."""
    per_tonne = None if band.rate_yuan is None else band.rate_yuan * 1000 / band.per_kg
    return {"id": band.id, "description": band.description, "from": _edge(band.above),
            "to": _edge(band.up_to), "action": band.action, "action_text": ACTIONS[band.action],
            "applies_to": APPLIES.get(band.applies_to or ""), "rate_yuan": band.rate_yuan,
            "per_kg": band.per_kg, "rate_per_tonne_yuan": per_tonne,
            "source": band.source.cite(), "verify": band.verify, "note": band.note}


def _row(rule: Any, **extra: Any) -> dict[str, Any]:
    """A sourced row of the tables (cap, zero fine, dimension band) in plain words."""
    return {"id": rule.id, "description": rule.description, "source": rule.source.cite(),
            "verify": rule.verify, "note": rule.note, **extra}


def _dimensions(bench: Benchmark) -> list[dict[str, Any]]:
    """The dimension scale's rows, or the row saying which scale it defers to."""
    if bench.dimensions is not None:
        return [_row(b) for b in bench.dimensions.bands]
    return [_row(bench.dimensions_from)] if bench.dimensions_from else []


def _tolerance(policy: TolerancePolicy) -> dict[str, Any]:
    """The tolerance policy in words; an MPE table as rows (class, percent of measured)."""
    mpe = [{"accuracy_class": k, "percent_of_measured": v}
           for k, v in (policy.mpe_percent_of_measured or {}).items()]
    return _row(policy, kind=policy.kind, percent_of_limit=policy.percent_of_limit, mpe=mpe)


def _example_class(policy: TolerancePolicy) -> str | None:
    """The accuracy class the worked example assumes under an MPE policy (the coarsest
    listed, as most weigh-in-motion devices are), none otherwise."""
    classes = list(policy.mpe_percent_of_measured or {})
    return max(classes, key=float) if classes else None


def _examples(rules: Any, bench: str, policy: TolerancePolicy) -> list[dict[str, Any]]:
    """The benchmark applied by overload.grade to one vehicle at several masses."""
    rows = []
    for mass in EXAMPLE_MASSES_KG:
        g = grade(EXAMPLE_CODE, mass, rules, benchmark=bench, tolerance=policy.id,
                  accuracy_class=_example_class(policy))
        rows.append({"axle_code": g.axle_code, "gross_kg": g.measured_kg,
                     "limit_kg": g.limit_kg, "tolerance_kg": g.tolerance_kg,
                     "excess_kg": g.excess_kg, "band": g.band, "action": g.action,
                     "action_text": ACTIONS.get(g.action, g.action), "fine_yuan": g.fine_yuan,
                     "steps": [{"cite": r.source.cite(), "detail": r.detail} for r in g.rules]})
    return rows


def benchmark_context(rules: Any, bench_id: str, tolerance_id: str) -> dict[str, Any]:
    """The benchmark in force and the tolerance policy, in plain words, with a worked
    example and the names of the other benchmarks."""
    bench = rules.benchmark(bench_id)
    policy = rules.tolerance_policy(tolerance_id)
    mass = bench.mass
    return {
        "benchmark": {"id": bench.id, "title": bench.title, "rounding": mass.rounding,
                      "rounding_note": mass.rounding_note,
                      "bands": [_band(b) for b in mass.bands],
                      "zero_fine": _row(mass.zero_fine, action=mass.zero_fine.action,
                                        action_text=ACTIONS[mass.zero_fine.action]),
                      "cap": _row(mass.cap, cap_yuan=mass.cap.cap_yuan),
                      "total_cap": _row(bench.total_cap, cap_yuan=bench.total_cap.cap_yuan),
                      "dimensions": _dimensions(bench)},
        "tolerance": _tolerance(policy),
        "example_accuracy_class": _example_class(policy),
        "examples": _examples(rules, bench.id, policy),
        "others": [{"id": b.id, "title": b.title} for k, b in sorted(rules.benchmarks.items())
                   if k != bench.id],
    }


@router.get("/benchmark", name="benchmark")
@router.get("/benchmark.json", name="benchmark_json")
def benchmark(request: Request) -> Response:
    """The discretion benchmark the center grades with, from its rule tables."""
    law = settings_of(request).law
    try:
        context = benchmark_context(law_rules(law), law.benchmark, law.tolerance)
    except (RuleError, KeyError) as exc:
        return refused(request, 500, f"the rule tables cannot show benchmark "
                       f"{law.benchmark!r}: {exc}")
    return page(request, "public/benchmark.html", context)
