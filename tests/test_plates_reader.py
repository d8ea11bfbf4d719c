"""The plate reader end to end, on both engines: real photos and crops from tests/data,
plates of every colour drawn by the simulated camera and set into a frame, a vehicle's
frames voting, front against rear, and what must never come out (an invented plate)."""

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from plates import (
    ENGINES,
    PlateReader,
    PlateReading,
    ReaderOptions,
    compare_front_rear,
    load_engine,
    load_image,
    vote,
)
from plates.locate import Box
from plates.reader import _bands
from sim.plates import draw_plate

DATA = Path(__file__).parent / "data" / "plates"
COLOURS = {"蓝牌": "blue", "黄牌": "yellow"}


@pytest.fixture(scope="module", params=ENGINES)
def reader(request) -> PlateReader:
    """A reader on each engine, started once per module."""
    return PlateReader(load_engine(request.param))


def scenes() -> list[dict]:
    with (DATA / "scenes" / "ground_truth.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def framed(plate: np.ndarray, angle: float = 4.0) -> np.ndarray:
    """A plate set into a 640 × 480 frame of grey noise, turned by ``angle`` degrees."""
    rng = np.random.default_rng(3)
    frame = rng.integers(90, 140, (480, 640, 3)).astype(np.uint8)
    h, w = plate.shape[:2]
    frame[260: 260 + h, 200: 200 + w] = plate
    turn = cv2.getRotationMatrix2D((200 + w / 2, 260 + h / 2), angle, 1.0)
    return cv2.warpAffine(frame, turn, (640, 480), borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("row", scenes(), ids=lambda r: r["plate"])
def test_real_scenes_read_exactly(reader, row):
    readings = reader.read(load_image(DATA / "scenes" / row["image"]))
    assert readings, "nothing read"
    first = readings[0]
    assert first.text == row["plate"]
    assert first.colour == COLOURS[row["colour"]]
    assert abs(first.box.cx - float(row["x"])) < 0.5 * float(row["width"]) + 20
    assert abs(first.box.cy - float(row["y"])) < 0.5 * float(row["height"]) + 20
    assert first.crop.ndim == 3 and first.crop.shape[0] >= 24
    assert 0.0 < first.confidence <= first.province_confidence <= 1.0


@pytest.mark.parametrize("path", sorted((DATA / "crops").glob("*.jpg")), ids=lambda p: p.stem)
def test_real_crops_read_exactly(reader, path):
    readings = reader.read(load_image(path))
    assert [r.text for r in readings] == [path.stem]


@pytest.mark.parametrize(("text", "colour", "double_row", "template"), [
    ("苏E2Y256", "blue", False, "ordinary"),
    ("苏E2Y256", "yellow", True, "ordinary"),
    ("京AD12345", "green", False, "new-energy-small"),
    ("粤B12345D", "yellow_green", False, "new-energy-large"),
])
def test_drawn_plates_of_every_paint_in_a_frame(reader, text, colour, double_row, template):
    plate = draw_plate(text, colour, double_row=double_row, px_per_mm=0.5)
    readings = reader.read(framed(plate))
    assert [(r.text, r.colour, r.template) for r in readings] == [(text, colour, template)]


def test_the_authority_letter_o_of_a_public_security_plate_is_read(reader):
    plate = draw_plate("粤O12345", "blue", px_per_mm=0.5)
    assert [r.text for r in reader.read(framed(plate))] == ["粤O12345"]


@pytest.mark.parametrize("turn", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE],
                         ids=["cw", "ccw"])
def test_a_frame_turned_a_quarter_reads_as_upright(reader, turn):
    frame = cv2.rotate(load_image(DATA / "scenes" / "京H99999.jpg"), turn)
    assert [r.text for r in reader.read(frame)] == ["京H99999"]


def test_a_dark_frame_is_read_at_the_second_look_and_counted(reader):
    frame = load_image(DATA / "scenes" / "川R35779.jpg")
    dark = (255.0 * (frame / 255.0) ** 2.2 * 0.06).astype(np.uint8)   # dusk, unlit
    looking = PlateReader(reader.engine)
    assert [r.text for r in looking.read(dark)] == ["川R35779"]
    assert (looking.second_looks.tried, looking.second_looks.found) == (1, 1)
    assert looking.second_looks.seconds > 0
    assert [r.text for r in looking.read(frame)] == ["川R35779"]
    assert looking.second_looks.tried == 1          # a frame read at once: no second look
    blind = PlateReader(reader.engine, options=ReaderOptions(second_look=False))
    assert blind.read(dark) == [] and blind.second_looks.tried == 0


def test_a_greyscale_frame_reads_the_text_and_leaves_the_colour_unknown(reader):
    grey = cv2.cvtColor(load_image(DATA / "scenes" / "京H99999.jpg"), cv2.COLOR_BGR2GRAY)
    readings = reader.read(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    assert [(r.text, r.colour) for r in readings] == [("京H99999", "unknown")]


def test_odd_shapes_read_nothing_and_do_not_fail(reader):
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 3), (5, 2000, 3), (2000, 5, 3), (24, 94, 3)]:
        assert reader.read(rng.integers(0, 255, shape).astype(np.uint8)) == []


def test_an_empty_frame_reads_nothing(reader):
    assert reader.read(np.full((480, 640, 3), 128, np.uint8)) == []


def test_a_covered_character_is_not_guessed(reader):
    crop = load_image(DATA / "crops" / "川X90621.jpg")
    assert [r.text for r in reader.read(crop)] == ["川X90621"]
    covered = crop.copy()
    covered[3:21, 58:68] = covered[3:21, 48:50].mean(axis=(0, 1))   # paint over the '6'
    assert reader.read(covered) == []


def test_a_vehicle_read_over_its_frames(reader):
    frame = load_image(DATA / "scenes" / "京H99999.jpg")
    blank = np.full_like(frame, 128)
    result = reader.read_vehicle([blank, frame, frame])
    assert result.status == "read" and result.text == "京H99999"
    assert (result.votes, result.frames) == (2, 3)
    assert reader.read_vehicle([blank, blank]).status == "unreadable"


def test_front_and_rear_agree_or_conflict(reader):
    front = reader.read_vehicle([load_image(DATA / "scenes" / "粤AK9331.jpg")])
    same = [reader.read(load_image(DATA / "scenes" / "粤AK9331.jpg"))]
    other = [reader.read(load_image(DATA / "scenes" / "浙A03168.jpg"))]
    assert compare_front_rear(front, same).status == "agree"
    check = compare_front_rear(front, other)
    assert check.status == "conflict" and check.rear == ("浙A03168",)
    assert compare_front_rear(front, [[]]).status == "front only"


def _reading(text: str, confidences: list[float]) -> PlateReading:
    return PlateReading(text=text, colour="blue", confidence=float(np.prod(confidences)),
                        province_confidence=confidences[0], template="ordinary",
                        box=Box(0, 0, 10, 3, 0), crop=np.zeros((3, 10, 3), np.uint8),
                        char_confidence=tuple(confidences))


def test_votes_mend_a_misread_character_and_keep_other_plates_apart():
    sure, unsure = [0.99] * 7, [0.99] * 5 + [0.4, 0.99]
    result = vote([_reading("皖A12345", sure), _reading("皖A12385", unsure),
                   _reading("皖A12345", sure), _reading("沪C77777", sure)], frames=5)
    assert result.text == "皖A12345" and result.votes == 2
    assert result.others == ("沪C77777",)
    assert vote([], frames=2).status == "unreadable"


def test_lines_are_joined_at_a_plates_dot_but_not_across_two_plates_side_by_side():
    """A row split at the dot (a third of a character's height apart) is one line; a
    lorry's painted number beside its plate (further apart) stays two: joined, they read
    as one wrong plate."""
    left = Box(100.0, 50.0, 60.0, 30.0, 0.0)
    at_dot = Box(100.0 + 30 + 0.3 * 30 + 60, 50.0, 120.0, 30.0, 0.0)
    apart = Box(100.0 + 30 + 0.7 * 30 + 60, 50.0, 120.0, 30.0, 0.0)
    assert len(_bands([left, at_dot])) == 1
    assert len(_bands([left, apart])) == 2
