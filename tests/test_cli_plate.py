"""``zhichao plate read`` through the real command line (in-process, the ONNX engine)."""

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from zhichao.cli import main

DATA = Path(__file__).parent / "data" / "plates"
SCENE = DATA / "scenes" / "京H99999.jpg"
CROP = DATA / "crops" / "沪C21F13.jpg"


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_json_one_object_per_image_scenes_and_crops_alike(capsys, tmp_path):
    empty = tmp_path / "grey.png"
    cv2.imwrite(str(empty), np.full((240, 320, 3), 128, np.uint8))
    assert main(["plate", "read", "--json", str(SCENE), str(CROP), str(empty)]) == 0
    out = lines(capsys.readouterr().out)
    assert [o["image"] for o in out] == [str(SCENE), str(CROP), str(empty)]
    assert [[p["text"] for p in o["plates"]] for o in out] == [["京H99999"], ["沪C21F13"], []]
    plate = out[0]["plates"][0]
    assert plate["colour"] == "blue" and 0 < plate["confidence"] <= 1
    assert len(plate["box"]) == 5 and abs(plate["box"][0] - 222) < 20


def test_a_bad_image_is_reported_and_the_others_still_read(capsys, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["plate", "read", "--json", str(broken), str(CROP)]) == 1
    captured = capsys.readouterr()
    out = lines(captured.out)
    assert "not an image" in out[0]["error"] and out[0]["plates"] == []
    assert out[1]["plates"][0]["text"] == "沪C21F13"
    assert "broken.jpg" in captured.err


def test_wrong_options_are_one_line_errors(capsys):
    assert main(["plate", "read", "--roi", "1,2", str(CROP)]) == 2
    assert "--roi" in capsys.readouterr().err
    assert main(["plate", "read", "--min-confidence", "1.5", str(CROP)]) == 2
    assert "--min-confidence" in capsys.readouterr().err
    assert main(["plate", "read", "--rear", str(CROP), "--", str(CROP)]) == 2
    assert "--vehicle" in capsys.readouterr().err


def test_a_vehicle_front_and_rear_with_crops_saved(capsys, tmp_path):
    crops = tmp_path / "crops"
    assert main(["plate", "read", "--json", "--vehicle", "--crops", str(crops), str(SCENE),
                 str(SCENE), "--rear", str(CROP)]) == 0
    summary = lines(capsys.readouterr().out)[-1]
    assert summary["vehicle"]["plate"]["text"] == "京H99999"
    assert summary["vehicle"]["votes"] == 2
    assert summary["front_rear"] == {"status": "conflict", "front": "京H99999",
                                     "rear": ["沪C21F13"]}
    saved = sorted(p.name for p in crops.iterdir())
    assert saved == ["京H99999.0.京H99999.png", "沪C21F13.0.沪C21F13.png"]
    assert cv2.imread(str(crops / saved[1])) is not None


def test_roi_limits_where_plates_are_looked_for(capsys):
    assert main(["plate", "read", "--json", "--roi", "0,0,120,100", str(SCENE)]) == 0
    assert lines(capsys.readouterr().out)[0]["plates"] == []
    assert main(["plate", "read", "--json", "--roi", "100,120,300,180", str(SCENE)]) == 0
    assert lines(capsys.readouterr().out)[0]["plates"][0]["text"] == "京H99999"


def test_the_table_names_each_plate(capsys):
    assert main(["plate", "read", str(SCENE)]) == 0
    out = capsys.readouterr().out
    assert "京H99999" in out and "blue" in out


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG whose header says ``width`` × ``height`` RGB, with a few rows of pixel data
    only (what a hostile or broken camera may send: the header is all a reader trusts
    before decoding)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = zlib.compress(b"\0" * (3 * width + 1) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_a_huge_image_is_refused_from_its_header_and_the_others_still_read(capsys, tmp_path):
    huge = tmp_path / "huge.png"
    _png_header(huge, 40_000, 30_000)
    large = tmp_path / "large.png"  # below OpenCV's own limit, above the reader's
    _png_header(large, 5_000, 4_000)
    assert main(["plate", "read", "--json", str(huge), str(large), str(CROP)]) == 1
    captured = capsys.readouterr()
    out = lines(captured.out)
    assert [o["image"] for o in out] == [str(huge), str(large), str(CROP)]
    assert "more than" in out[0]["error"] and out[0]["plates"] == []
    assert "5000 × 4000 px is more than the 12000000 pixels" in out[1]["error"]
    assert out[2]["plates"][0]["text"] == "沪C21F13"
    assert captured.err.count("\n") == 2 and "huge.png" in captured.err


def test_crops_to_a_folder_that_cannot_be_made_is_one_line(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    for crops in (blocker / "crops", blocker):
        code = main(["plate", "read", "--crops", str(crops), str(CROP)])
        captured = capsys.readouterr()
        assert (code, captured.out, captured.err.count("\n")) == (2, "", 1), crops
        assert f"option --crops {crops}: cannot make the folder" in captured.err


def test_crops_to_a_missing_folder_makes_it(capsys, tmp_path):
    crops = tmp_path / "new" / "crops"
    assert main(["plate", "read", "--json", "--crops", str(crops), str(CROP)]) == 0
    assert [p.name for p in crops.iterdir()] == ["沪C21F13.0.沪C21F13.png"]


def test_a_dark_image_is_read_unless_the_second_look_is_turned_off(capsys, tmp_path):
    frame = cv2.imread(str(DATA / "scenes" / "川R35779.jpg"))
    dark = tmp_path / "dusk.png"
    cv2.imwrite(str(dark), (255.0 * (frame / 255.0) ** 2.2 * 0.06).astype(np.uint8))
    assert main(["plate", "read", "--json", str(dark)]) == 0
    assert [p["text"] for p in lines(capsys.readouterr().out)[0]["plates"]] == ["川R35779"]
    assert main(["plate", "read", "--json", "--no-second-look", str(dark)]) == 0
    assert lines(capsys.readouterr().out)[0]["plates"] == []
