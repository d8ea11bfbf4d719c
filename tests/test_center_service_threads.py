"""A thread of the center that dies stops the whole center: ``run_center`` raises one
line naming the thread and its cause, and ``zhichao center run`` exits 2 with it, instead
of a center half running (its receiver acknowledging packets no one turns into cases)."""

import threading
import time

import pytest
import zmq

from center.service import run_center
from center.settings import CenterSettings
from evidence.keys import make_keys
from zhichao.cli import main
from zhichao.errors import ZhichaoError


def test_a_dying_cases_thread_stops_run_center_with_its_reason(tmp_path):
    """An interval that the loader refuses, given by a program that builds its settings
    without validating them: the cases thread's wait overflows on its first round."""
    settings = CenterSettings(database=str(tmp_path / "center.db"),
                              images_dir=tmp_path / "images")
    settings = settings.model_copy(update={"law": settings.law.model_copy(
        update={"process_interval_s": float("inf")})})
    started = time.monotonic()
    with pytest.raises(ZhichaoError) as info:
        run_center(settings, seconds=30, receive=False)
    assert time.monotonic() - started < 15  # not the whole 30 s half running
    message = str(info.value)
    assert "\n" not in message
    assert "cases thread" in message and "OverflowError" in message
    assert not [t for t in threading.enumerate() if t.name in ("cases", "receiver")]


def test_a_dying_receiver_stops_center_run_with_exit_2_and_one_line(tmp_path, capsys):
    """The receiver cannot bind (another program holds the port): the cases thread is
    stopped too and the command says which endpoint, in one line."""
    make_keys(tmp_path / "keys", "center", curve_only=True)
    with zmq.Context.instance().socket(zmq.ROUTER) as holder:
        port = holder.bind_to_random_port("tcp://127.0.0.1")
        config = tmp_path / "c.yaml"
        config.write_text(f"database: center.db\nreceiver:\n  listen: "
                          f"[tcp://127.0.0.1:{port}]\n  server_secret_key: "
                          f"keys/center.key_secret\n", encoding="utf-8")
        started = time.monotonic()
        code = main(["center", "run", "--config", str(config), "--seconds", "30"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and time.monotonic() - started < 20
    assert len(err.splitlines()) == 1, err
    assert "receiver thread" in err and f"tcp://127.0.0.1:{port}" in err
    assert not [t for t in threading.enumerate() if t.name in ("cases", "receiver")]
