"""Small real file systems for tests of what happens when a disk fills: a tmpfs mounted
as root, and ballast that leaves a chosen share of it free."""

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(where: Path, size: str, *options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (root only), unmounted after; the test is skipped
    with the reason where none can be mounted."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join((f"size={size}",
                                                                  *options)),
                           "tmpfs", str(where)], capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"no tmpfs can be mounted here ({done.stderr.strip()}): a nearly full "
                    "or read-only file system needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path, free_share: float) -> None:
    """Allocate into ``folder`` until about ``free_share`` of its file system is free."""
    total, _, free = shutil.disk_usage(folder)
    ballast = folder / "ballast"
    size = ballast.stat().st_size if ballast.exists() else 0
    fd = os.open(ballast, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, max(size + free - int(total * free_share), 1))
    finally:
        os.close(fd)
