"""Image files of any bytes (issue 17: every parser of outside input fuzzed).

:func:`plates.reader.load_image` (``zhichao plate read``) gives pixels or a
PlateImageError, and the center's reading of a stored image
(:func:`center.plate_reading.load_frame`) pixels or an ImageRefusedError, never another
exception: for any bytes, for bytes behind the signature of any format Pillow knows, for
real PNG and JPEG files cut short or with bytes changed, and for headers claiming any
size. Nothing decoded ever has more pixels than allowed, and a header claiming
40 000 × 30 000 px is refused from the header, in bounded memory."""

import hashlib
import resource
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from center.plate_reading import ImageRefusedError, ReadLimits, load_frame
from evidence.packet import ImageRef
from plates.reader import PlateImageError, load_image

BOUNDED = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])
LONG = settings(BOUNDED, max_examples=5000)
MAX_PIXELS = 64 * 64
"""The bound in these tests: any header claiming more must be refused before decoding."""

_rng = np.random.default_rng(17)
PIXELS = _rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
REAL = {"png": cv2.imencode(".png", PIXELS)[1].tobytes(),
        "jpeg": cv2.imencode(".jpg", PIXELS)[1].tobytes()}

SIGNATURES = [
    b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"\xff\xd8\xff",
    b"\xff\xd8\xff\xc0\x00\x11\x08", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
    b"II+\x00", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"Pf", b"PF", b"PG",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\x00\x00\x00\x00WEBPVP8L", b"\x00\x00\x01\x00",
    b"\x00\x00\x02\x00", b"icns", b"8BPS", b"DDS |\x00\x00\x00", b"qoif", b"\x0a\x05\x01\x08",
    b"\x01\xda", b"SIMPLE  =                    T", b"%!PS-Adobe-3.0 EPSF-3.0",
    b"\xc5\xd0\xd3\xc6", b"\x59\xa6\x6a\x95", b"Image type=", b"BLP1", b"BLP2", b"GIMP",
    b"FTEX", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51", b"#define ",
    b"/* XPM */", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"\xb1\x68\xde\x3a", b"\x00\x00\x11\xaf",
    b"GRIB", b"BUFR", b"\x89HDF\r\n\x1a\n", b"\x00\x00\x00\x00", b"\x0a\x00", b"#?RADIANCE\n",
    b"\x76\x2f\x31\x01", b"\x00\x00\x00\x1cftypavif", b"\x00\x00\x00\x0cJXL \r\n\x87\n"]
"""The first bytes of the formats Pillow (or OpenCV) identifies."""


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk, its CRC right."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, body: bytes = b"") -> bytes:
    """A PNG whose header says ``width`` × ``height`` (8-bit RGB), then ``body`` as its
    compressed pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
            + chunk(b"IEND", b""))


SOS = b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"


def jpeg(width: int, height: int, body: bytes = b"") -> bytes:
    """A baseline JPEG whose frame header says ``width`` × ``height``, then ``body`` as its
    scan."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return (b"\xff\xd8\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + SOS + body
            + b"\xff\xd9")


def gif(width: int, height: int, body: bytes = b"") -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + body


def bmp(width: int, height: int, body: bytes = b"") -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + len(body), 0, 0, 54) + info + body


def ppm(width: int, height: int, body: bytes = b"") -> bytes:
    return b"P6\n%d %d\n255\n" % (width, height) + body


HEADERS = {"png": png, "jpeg": jpeg, "gif": gif, "bmp": bmp, "ppm": ppm}
CAP = {"jpeg": 65535, "gif": 65535}
"""The largest side a format's header can say (the others: 2^31 - 1)."""
SIDE = st.integers(0, 300) | st.integers(0, 70_000) | st.integers(0, 2**31 - 1)

ANY_IMAGE_BYTES = st.one_of(
    st.binary(max_size=600),
    st.tuples(st.sampled_from(SIGNATURES), st.binary(max_size=400)).map(b"".join),
    st.sampled_from(sorted(REAL)).flatmap(lambda k: st.tuples(
        st.integers(0, len(REAL[k])), st.integers(0, 40), st.binary(max_size=40)).map(
        lambda t: REAL[k][:t[0]] + t[2] + REAL[k][t[0] + t[1]:])),
    st.sampled_from(sorted(REAL)).flatmap(lambda k: st.integers(0, len(REAL[k])).map(
        lambda n: REAL[k][:n])),
    st.tuples(st.sampled_from(sorted(HEADERS)), SIDE, SIDE, st.binary(max_size=200)).map(
        lambda t: HEADERS[t[0]](min(t[1], CAP.get(t[0], t[1])),
                                min(t[2], CAP.get(t[0], t[2])), t[3])))
"""Any bytes; bytes behind a format's signature; real files changed or cut short;
headers claiming any size."""


def cli_reads(folder: Path, data: bytes) -> None:
    """``zhichao plate read``'s loading: pixels within the bound, or PlateImageError."""
    path = folder / "车牌 image"
    path.write_bytes(data)
    try:
        image = load_image(path, max_pixels=MAX_PIXELS)
    except PlateImageError as exc:
        assert str(exc).startswith(str(path))
    else:
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        assert image.shape[0] * image.shape[1] <= MAX_PIXELS


def center_reads(folder: Path, data: bytes) -> None:
    """The center's loading of a stored image: pixels within the bound, or
    ImageRefusedError."""
    digest = hashlib.sha256(data).hexdigest()
    (folder / digest[:2]).mkdir(exist_ok=True)
    (folder / digest[:2] / digest).write_bytes(data)
    ref = ImageRef(role="front", sha256=digest, size=max(1, len(data)))
    try:
        image = load_frame(folder, ref, ReadLimits(max_bytes=100_000, max_pixels=MAX_PIXELS))
    except ImageRefusedError as exc:
        assert str(exc).startswith(f"front image {digest[:12]}")
    else:
        assert image.ndim == 3 and image.shape[2] == 3
        assert image.shape[0] * image.shape[1] <= MAX_PIXELS


@BOUNDED
@given(data=ANY_IMAGE_BYTES)
def test_any_bytes_load_as_an_image_or_raise_plate_image_error(tmp_path, data):
    cli_reads(tmp_path, data)


@BOUNDED
@given(data=ANY_IMAGE_BYTES)
def test_any_stored_bytes_load_at_the_center_or_are_refused(tmp_path, data):
    center_reads(tmp_path, data)


@pytest.mark.parametrize("kind", sorted(REAL))
def test_real_files_load_whole_and_are_refused_above_the_bound(tmp_path, kind):
    path = tmp_path / f"plate.{kind}"
    path.write_bytes(REAL[kind])
    assert load_image(path).shape == PIXELS.shape
    with pytest.raises(PlateImageError, match="refused from its header"):
        load_image(path, max_pixels=24 * 40 - 1)


@pytest.mark.parametrize("kind", ["png", "jpeg"])
@pytest.mark.parametrize("size", [(40_000, 30_000), (65_535, 65_535), (4001, 3000)])
def test_a_header_claiming_a_huge_size_is_refused_from_the_header(tmp_path, kind, size):
    """A 40 000 × 30 000 image would take 3.6 GB decoded: refused from its few header
    bytes (the real pixels after it never read), peak memory barely moving."""
    data = HEADERS[kind](*size, zlib.compress(bytes(3 * 40 * 24)))
    path = tmp_path / f"huge.{kind}"
    path.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(PlateImageError, match="refused from its header"):
        load_image(path)
    with pytest.raises(ImageRefusedError):
        center_load(tmp_path, data)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, f"peak memory grew {grown_mb:.0f} MB"


def center_load(folder: Path, data: bytes) -> np.ndarray:
    digest = hashlib.sha256(data).hexdigest()
    (folder / digest[:2]).mkdir(exist_ok=True)
    (folder / digest[:2] / digest).write_bytes(data)
    return load_frame(folder, ImageRef(role="front", sha256=digest, size=len(data)),
                      ReadLimits(max_bytes=10_000_000, max_pixels=12_000_000))


@pytest.mark.slow
@LONG
@given(data=ANY_IMAGE_BYTES)
def test_any_image_bytes_long_run(tmp_path, data):
    cli_reads(tmp_path, data)
    center_reads(tmp_path, data)
