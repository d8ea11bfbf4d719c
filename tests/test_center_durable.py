"""center.durable: image files written straight to the disk, on the real file system."""

import errno
import os
import threading
from pathlib import Path

import pytest

from center import durable
from center.durable import BLOCK, BUFFER_MIN, fsync_dir, write_file


@pytest.fixture(autouse=True)
def _direct_again():
    """Each test starts as a new process would: O_DIRECT tried first."""
    durable._direct["ok"] = hasattr(os, "O_DIRECT")
    yield
    durable._direct["ok"] = hasattr(os, "O_DIRECT")


SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 150_000, BUFFER_MIN + 12_345]


@pytest.mark.parametrize("size", SIZES)
def test_the_file_holds_exactly_the_bytes(tmp_path: Path, size: int):
    data = os.urandom(size)
    path = write_file(tmp_path / "image.jpg", data)
    assert path.read_bytes() == data
    assert path.stat().st_size == size


def test_this_disk_takes_o_direct(tmp_path: Path):
    """The test folder's file system allows O_DIRECT (ext4 here): the direct path ran and
    was not silently given up."""
    if not hasattr(os, "O_DIRECT"):
        pytest.skip("no O_DIRECT on this platform")
    try:
        fd = os.open(tmp_path / "probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError as exc:
        pytest.skip(f"{tmp_path} refuses O_DIRECT ({exc})")
    os.close(fd)
    write_file(tmp_path / "a.jpg", os.urandom(150_000))
    assert durable._direct["ok"] is True


def test_a_smaller_file_after_a_larger_one_has_no_tail_of_it(tmp_path: Path):
    """The thread's buffer is reused: the second file must not carry the first's end."""
    write_file(tmp_path / "big.jpg", b"\xff" * 20_000)
    small = write_file(tmp_path / "small.jpg", b"\x01" * 5_000)
    assert small.read_bytes() == b"\x01" * 5_000


def test_an_existing_file_is_replaced_whole(tmp_path: Path):
    path = tmp_path / "image.jpg"
    path.write_bytes(b"old" * 50_000)
    write_file(path, b"new")
    assert path.read_bytes() == b"new"


def test_threads_writing_at_once_each_get_their_own_bytes(tmp_path: Path):
    files = {tmp_path / f"{n}.jpg": os.urandom(1000 + 37_000 * n) for n in range(24)}
    threads = [threading.Thread(target=write_file, args=(path, data))
               for path, data in files.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert {p: p.read_bytes() for p in files} == files


def test_a_file_system_refusing_o_direct_gets_the_ordinary_write(tmp_path: Path, monkeypatch,
                                                                 caplog):
    """No file system here refuses O_DIRECT (tmpfs takes it since Linux 6.6), so the
    refusal is made up: os.open fails with EINVAL for O_DIRECT as such a one would."""
    real_open = os.open

    def refusing(path, flags, *args):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing)
    data = os.urandom(10_000)
    with caplog.at_level("INFO", logger="zhichao.center.durable"):
        path = write_file(tmp_path / "a.jpg", data)
        again = write_file(tmp_path / "b.jpg", data)
    assert path.read_bytes() == data and again.read_bytes() == data
    assert durable._direct["ok"] is False
    assert sum("refuses O_DIRECT" in r.message for r in caplog.records) == 1


def test_other_errors_are_not_swallowed(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        write_file(tmp_path / "no such folder" / "a.jpg", b"x" * 100)


def test_unsynced_write_and_folder_flush(tmp_path: Path):
    path = write_file(tmp_path / "a.jpg", b"abc", sync=False)
    fsync_dir(tmp_path)
    assert path.read_bytes() == b"abc"
