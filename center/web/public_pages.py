"""Public pages, no log-in: where enforcement devices stand and since when they are
announced, the benchmark in force, monthly figures per device. Only published fields
leave these routes."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from center.registry import device_to_dict, list_devices
from center.web.pages import DB, page

router = APIRouter(tags=["public"])

PUBLISHED = ("device_id", "road", "stake", "direction", "latitude", "longitude",
             "notice_date", "notice_document", "notice_url", "enforcement_start", "active",
             "suspensions")
"""The fields of a device the public pages show: where it stands, its notice, its state
(行政处罚法 Art. 41: locations published). Certificates and reviews stay with staff."""


def published(device: dict) -> dict:
    """A device as the public may see it."""
    return {k: device.get(k) for k in PUBLISHED}


@router.get("/", name="home")
@router.get("/index.json", name="home_json")
def home(request: Request) -> Response:
    return page(request, "public/index.html", {})


@router.get("/devices", name="devices")
@router.get("/devices.json", name="devices_json")
def devices(request: Request, session: DB) -> Response:
    rows = [published(device_to_dict(d, s)) for d, s in list_devices(session)]
    return page(request, "public/devices.html", {"devices": rows})
