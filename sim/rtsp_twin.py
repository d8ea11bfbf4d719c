"""An RTSP camera on the loopback, serving a video file: the network twin of a camera.

ffmpeg cannot serve RTSP to a pulling client (its ``-rtsp_flags listen`` is for receiving
a stream someone pushes), and the Debian-packaged RTSP servers need GStreamer's Python
bindings outside the virtual environment. This twin therefore speaks the little RTSP a
camera needs itself — OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN — and sends
the frames as Motion-JPEG over RTP (RFC 2435, payload type 26) interleaved on the RTSP
TCP connection (RFC 2326 §10.12), the transport IP cameras offer for lossless delivery.
A client asking for RTP over UDP is answered 461 (unsupported transport); FFmpeg, and so
OpenCV, then retries over TCP by itself.

Frames are read from the file with OpenCV when the twin starts, re-encoded as baseline
JPEG (4:2:0, standard Huffman tables, what RFC 2435 type 1 carries) and kept in memory
(a few tens of kB each), then sent at the file's frame rate, looping. A live twin
(:class:`LiveFrames`) instead draws each frame when it is due, on a clock shared with the
other twins of a simulated site, so every client sees the moment the site is at: a
camera on the road, not a recording.
:meth:`RtspTwin.stop` drops every client, as a camera losing power would; ``start()``
again on the same port brings it back.
"""

import contextlib
import itertools
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from drivers.errors import DeviceError

RTP_CLOCK_HZ = 90_000
RTP_PAYLOAD_BYTES = 1400
JPEG_PAYLOAD_TYPE = 26
JPEG_QUALITY = 85
SOCKET_TIMEOUT_S = 0.2
RTP_FRAME_BASE = 1_000_000
"""Added to a live frame's number for its RTP timestamp, so frames before the epoch
(negative numbers) still have positive, increasing timestamps."""


def jpeg_parts(jpeg: bytes) -> tuple[bytes, bytes, int, int, int]:
    """Split a baseline JPEG into what RFC 2435 sends: quantisation tables and scan data.

    Returns ``(tables, scan, width_px, height_px, rtp_type)``, the tables concatenated
    in table order (64 bytes each, 8-bit precision), ``rtp_type`` 0 for 4:2:2 and 1 for
    4:2:0 luma sampling. Raises ``DeviceError`` on a JPEG that RFC 2435 cannot carry.
    """
    tables: dict[int, bytes] = {}
    width = height = rtp_type = -1
    i = 2  # after SOI
    while i + 4 <= len(jpeg):
        marker, length = jpeg[i + 1], struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        body = jpeg[i + 4:i + 2 + length]
        if marker == 0xDB:  # DQT: one or more tables
            for j in range(0, len(body), 65):
                if body[j] >> 4:
                    raise DeviceError("RTSP twin: 16-bit JPEG quantisation tables")
                tables[body[j] & 0x0F] = body[j + 1:j + 65]
        elif marker == 0xC0:  # SOF0: height, width, then the luma sampling factors
            height, width = struct.unpack(">HH", body[1:5])
            sampling = body[7]
            rtp_type = {0x21: 0, 0x22: 1}.get(sampling, -1)
        elif marker == 0xDA:  # SOS: the entropy-coded scan follows its header
            scan = jpeg[i + 2 + length:]
            scan = scan[:-2] if scan.endswith(b"\xff\xd9") else scan
            if rtp_type < 0 or width < 0 or width > 2040 or height > 2040:
                raise DeviceError(f"RTSP twin: JPEG {width}x{height} with sampling "
                                  f"type {rtp_type} is not RFC 2435 type 0 or 1")
            return b"".join(tables[k] for k in sorted(tables)), scan, width, height, rtp_type
        elif marker in (0xC1, 0xC2, 0xDD):
            raise DeviceError("RTSP twin: only baseline JPEG without restart markers")
        i += 2 + length
    raise DeviceError("RTSP twin: JPEG without a scan")


def rtp_jpeg_packets(jpeg: bytes, seq: int, timestamp: int, ssrc: int) -> list[bytes]:
    """One JPEG frame as RTP packets (RFC 2435, in-band tables with Q = 255)."""
    tables, scan, width, height, rtp_type = jpeg_parts(jpeg)
    packets = []
    for offset in range(0, len(scan), RTP_PAYLOAD_BYTES):
        chunk = scan[offset:offset + RTP_PAYLOAD_BYTES]
        last = offset + RTP_PAYLOAD_BYTES >= len(scan)
        header = struct.pack(">BBHII", 0x80, (0x80 if last else 0) | JPEG_PAYLOAD_TYPE,
                             (seq + len(packets)) & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
        jpeg_header = struct.pack(">I", offset)  # type-specific 0, then 24-bit offset
        jpeg_header += bytes([rtp_type, 255, (width + 7) // 8, (height + 7) // 8])
        quant = struct.pack(">BBH", 0, 0, len(tables)) + tables if offset == 0 else b""
        packets.append(header + jpeg_header + quant + chunk)
    return packets


class RtspTwin:
    """Serve ``video`` as a live RTSP camera at ``rtsp://127.0.0.1:PORT/cam``.

    ``port=0`` picks a free port (read :attr:`url` after :meth:`start`). The same port is
    kept by a later ``start()`` so that a client can reconnect.
    """

    def __init__(self, video: Path | None = None, *, port: int = 0, path: str = "cam",
                 live: "LiveFrames | None" = None):
        if (video is None) == (live is None):
            raise ValueError("an RTSP twin serves either a video file or live frames")
        self.video = Path(video) if video is not None else None
        self.live = live
        self.port = port
        self.path = path
        self.clients_served = 0
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.jpegs: list[bytes] = []
        self.fps = 25.0

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called: every thread of the twin winds down."""
        return self._stop.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep, ending early when the twin stops."""
        self._stop.wait(seconds)

    @property
    def url(self) -> str:
        """Where a camera driver connects."""
        return f"rtsp://127.0.0.1:{self.port}/{self.path}"

    def start(self) -> None:
        """Listen and serve clients in background threads."""
        if self.live is not None:
            self.fps = self.live.fps
        elif not self.jpegs:
            self.jpegs, self.fps = _load_jpegs(self.video)
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", self.port))
        except OSError as exc:
            server.close()
            raise DeviceError(f"RTSP twin cannot listen on 127.0.0.1:{self.port}: {exc}") from None
        server.listen(4)
        server.settimeout(SOCKET_TIMEOUT_S)
        self.port = server.getsockname()[1]
        self._server = server
        self._stop.clear()
        self.spawn(self._accept_loop, "rtsp-twin-accept")

    def stop(self) -> None:
        """Stop listening and drop every client (the camera goes dark)."""
        self._stop.set()
        with self._lock:
            for conn in self._conns:
                _close(conn)
            self._conns.clear()
        if self._server is not None:
            _close(self._server)
            self._server = None
        for thread in self._threads:
            thread.join(2.0)
        self._threads.clear()

    def spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        """Run ``target`` in a daemon thread that :meth:`stop` joins."""
        thread = threading.Thread(target=target, args=args, daemon=True, name=name)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        """Accept clients until stopped."""
        server = self._server
        while not self._stop.is_set() and server is not None:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(SOCKET_TIMEOUT_S)
            with self._lock:
                self._conns.append(conn)
                self.clients_served += 1
            self.spawn(self._serve, f"rtsp-twin-client-{self.clients_served}", conn)

    def _serve(self, conn: socket.socket) -> None:
        """Answer one client's requests; stream once it says PLAY."""
        session = _Session(conn, self)
        try:
            session.run()
        except OSError:
            pass  # the client went away, or we were stopped
        finally:
            session.playing.clear()
            _close(conn)


class _Session:
    """One client: the request loop, and the streaming thread started by PLAY."""

    def __init__(self, conn: socket.socket, twin: RtspTwin):
        self.conn = conn
        self.twin = twin
        self.playing = threading.Event()
        self.send_lock = threading.Lock()
        self.buffer = b""

    def run(self) -> None:
        """Read requests (skipping the client's interleaved RTCP) until the end."""
        while not self.twin.stopping:
            request = self._next_request()
            if request is None:
                continue
            if not self._answer(*request):
                return

    def _next_request(self) -> tuple[str, dict[str, str]] | None:
        """The next RTSP request, or None when no whole one has arrived yet."""
        while self.buffer.startswith(b"$") and len(self.buffer) >= 4:
            size = struct.unpack(">H", self.buffer[2:4])[0]
            if len(self.buffer) < 4 + size:
                break
            self.buffer = self.buffer[4 + size:]
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.buffer.startswith(b"$"):
            try:
                data = self.conn.recv(4096)
            except TimeoutError:
                return None
            if not data:
                raise ConnectionResetError("client closed")
            self.buffer += data
            return None
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
        lines = head.split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        self.buffer = self.buffer[int(headers.get("content-length", 0)):]
        return lines[0], headers

    def _answer(self, request_line: str, headers: dict[str, str]) -> bool:
        """Reply to one request; False when the client tore the session down."""
        method = request_line.split(" ", 1)[0]
        extra, body, status = {}, "", "200 OK"
        if method == "OPTIONS":
            extra["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN"
        elif method == "DESCRIBE":
            extra["Content-Type"] = "application/sdp"
            extra["Content-Base"] = self.twin.url + "/"
            body = _sdp(self.twin.url)
        elif method == "SETUP":
            transport = headers.get("transport", "")
            if "TCP" not in transport.upper():
                status = "461 Unsupported Transport"
            else:
                extra["Transport"] = "RTP/AVP/TCP;unicast;interleaved=0-1"
        elif method == "PLAY":
            extra["Range"] = "npt=0.000-"
        elif method not in ("GET_PARAMETER", "TEARDOWN", "PAUSE"):
            status = "501 Not Implemented"
        self._reply(status, headers.get("cseq", "0"), extra, body)
        if method == "PLAY" and not self.playing.is_set():
            self.playing.set()
            self.twin.spawn(self._stream, "rtsp-twin-stream")
        return method != "TEARDOWN"

    def _reply(self, status: str, cseq: str, extra: dict[str, str], body: str) -> None:
        lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}", "Session: 5a7e2c01;timeout=60",
                 *(f"{k}: {v}" for k, v in extra.items())]
        if body:
            lines.append(f"Content-Length: {len(body.encode())}")
        with self.send_lock:
            self.conn.sendall(("\r\n".join(lines) + "\r\n\r\n" + body).encode())

    def _stream(self) -> None:
        """Send the frames at the file's frame rate, looping, while the client plays."""
        if self.twin.live is not None:
            self._stream_live(self.twin.live)
            return
        frames, fps = self.twin.jpegs, self.twin.fps
        seq, ssrc, t0 = 0, 0x2A1C5E77, time.monotonic()
        try:
            for k in itertools.count():
                if not self.playing.is_set() or self.twin.stopping:
                    return
                packets = rtp_jpeg_packets(frames[k % len(frames)], seq,
                                           round(k * RTP_CLOCK_HZ / fps), ssrc)
                seq += len(packets)
                data = b"".join(b"$\x00" + struct.pack(">H", len(p)) + p for p in packets)
                with self.send_lock:
                    self.conn.sendall(data)
                self.twin.wait(max(0.0, t0 + (k + 1) / fps - time.monotonic()))
        except OSError:
            return


    def _stream_live(self, live: "LiveFrames") -> None:
        """Send the frame of the site's present moment, each when it is due, from the one
        showing now on: a client joining late starts at the present, as with a camera."""
        seq, ssrc = 0, 0x2A1C5E78
        k = live.index_at(time.monotonic())  # before the epoch too: the empty road
        try:
            while not self.twin.stopping and self.playing.is_set():
                self.twin.wait(max(0.0, live.due_s(k) - time.monotonic()))
                if self.twin.stopping or not self.playing.is_set():
                    return
                stamp = round((k + RTP_FRAME_BASE) * RTP_CLOCK_HZ / live.fps) & 0xFFFFFFFF
                packets = rtp_jpeg_packets(live.jpeg(k), seq, stamp, ssrc)
                seq += len(packets)
                data = b"".join(b"$\x00" + struct.pack(">H", len(p)) + p for p in packets)
                with self.send_lock:
                    self.conn.sendall(data)
                k = max(k + 1, live.index_at(time.monotonic()))  # late: skip, as a camera does
        except OSError:
            return


class LiveFrames:
    """Frames drawn when due: frame ``k`` shows simulation time ``k / fps`` and is due at
    host-monotonic ``epoch_s + k / fps``. ``draw(t_s)`` paints one; the JPEGs of the last
    few frames are kept, so clients of one twin (a front and a rear camera on one view)
    share each drawing."""

    KEEP = 8

    def __init__(self, draw: Callable[[float, int], np.ndarray], *, fps: float,
                 epoch_s: float):
        self.draw, self.fps, self.epoch_s = draw, fps, epoch_s
        self._jpegs: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def index_at(self, t_mono: float) -> int:
        """The frame showing host-monotonic time ``t_mono``."""
        return int((t_mono - self.epoch_s) * self.fps)

    def due_s(self, k: int) -> float:
        """When frame ``k`` is sent (host-monotonic)."""
        return self.epoch_s + k / self.fps

    def jpeg(self, k: int) -> bytes:
        """Frame ``k`` as baseline JPEG, drawn once whoever asks first."""
        with self._lock:
            if k not in self._jpegs:
                self._jpegs[k] = _encode(self.draw(k / self.fps, k))
                for old in [i for i in self._jpegs if i < k - self.KEEP]:
                    del self._jpegs[old]
            return self._jpegs[k]


def _load_jpegs(video: Path) -> tuple[list[bytes], float]:
    """Every frame of the file as JPEG, and its frame rate, read before serving.

    Read up front because OpenCV's FFmpeg backend opens captures under one process-wide
    lock: a capture opened by the server while a client in the same process is opening
    its own would wait for the client, which waits for the server's frames.
    """
    if not video.is_file():
        raise DeviceError(f"RTSP twin: no video file {video}")
    cap = cv2.VideoCapture(str(video))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        jpegs = []
        while True:
            ok, image = cap.read()
            if not ok:
                break
            jpegs.append(_encode(image))
    finally:
        cap.release()
    if not jpegs:
        raise DeviceError(f"RTSP twin: no frame in {video}")
    return jpegs, fps


def _encode(image: np.ndarray) -> bytes:
    """Baseline JPEG, 4:2:0, standard tables: what RFC 2435 type 1 expects."""
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
                                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420])
    if not ok:
        raise DeviceError("RTSP twin: OpenCV could not encode a frame as JPEG")
    return jpeg.tobytes()


def _sdp(url: str) -> str:
    """Session description: one Motion-JPEG video track."""
    return ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=zhichao camera twin\r\n"
            f"c=IN IP4 0.0.0.0\r\nt=0 0\r\na=control:{url}\r\n"
            "m=video 0 RTP/AVP 26\r\na=control:track0\r\n")


def _close(sock: socket.socket) -> None:
    """Close a socket that may already be closed."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
