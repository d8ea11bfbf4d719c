"""Files on the disk before anyone is told so: the center's image store writes through here.

:func:`write_file` writes a file and flushes it (``fsync``) before it returns. Where the
file system allows, the bytes go with ``O_DIRECT``: straight from a reused, page-aligned
buffer to the disk instead of being copied into the page cache first. An image is written
once and seldom read back soon, so the cache gains nothing from it, and on a virtual
machine every fresh page-cache page costs a fault in the host as well: on the 2-core
machines measured, that copy was the largest single cost of storing images (about a fifth
of the CPU of a whole delivery), and writing directly stored 13–21 % more packets a second.
A file system that refuses ``O_DIRECT`` (tmpfs, some network mounts) gets the ordinary
write, once per process noted in the log.

:func:`fsync_dir` makes a rename durable; :func:`syncfs` flushes a whole file system in one
call (the ``ZHICHAO_IMAGE_SYNC=syncfs`` option of the image store).
"""

import ctypes
import ctypes.util
import errno
import logging
import mmap
import os
import threading
from pathlib import Path

log = logging.getLogger("zhichao.center.durable")

BLOCK = 4096
"""O_DIRECT needs the buffer, the offset and the length aligned to the device's logical
block (512 or 4096 bytes); 4096 satisfies both."""
BUFFER_MIN = 1 << 20
"""Each writing thread keeps one aligned buffer of at least this size, grown on demand."""

_local = threading.local()
_direct = {"ok": hasattr(os, "O_DIRECT")}


def write_file(path: Path, data: bytes | memoryview, sync: bool = True) -> Path:
    """Write ``data`` to a new file at ``path`` and, unless ``sync`` is off, flush it to
    the disk before returning; returns the path."""
    if sync and _direct["ok"]:
        try:
            return _write_direct(path, data)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _direct["ok"] = False
            log.info("%s: the file system refuses O_DIRECT; image files are written "
                     "through the page cache", path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, memoryview(data))
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _write_direct(path: Path, data: bytes | memoryview) -> Path:
    """The file written with O_DIRECT from this thread's aligned buffer: the last block
    padded with zeros, the file then cut to its true length, then fsync'd (the length and
    the blocks' places are metadata the write alone does not make durable)."""
    size = len(data)
    padded = -(-size // BLOCK) * BLOCK
    buffer = _buffer(padded)
    buffer[:size] = data
    buffer[size:padded] = bytes(padded - size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    try:
        _write_all(fd, memoryview(buffer)[:padded])
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _buffer(size: int) -> mmap.mmap:
    """This thread's page-aligned buffer (an anonymous mapping), at least ``size`` bytes."""
    buffer = getattr(_local, "buffer", None)
    if buffer is None or len(buffer) < size:
        if buffer is not None:
            buffer.close()
        buffer = _local.buffer = mmap.mmap(-1, max(size, BUFFER_MIN))
    return buffer


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (a rename) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _load_syncfs():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


def syncfs_available() -> bool:
    """Whether this C library offers syncfs(2)."""
    return _SYNCFS is not None


def syncfs(folder: Path) -> None:
    """Flush the whole file system holding ``folder`` (data and names) in one call."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {folder}: {os.strerror(err)}")
    finally:
        os.close(fd)
