"""A center the fault tests kill with SIGKILL: the receiver, configured by one JSON
argument (CenterSettings as JSON).

    python tests/fault_center.py '{"database": ..., "images_dir": ..., "receiver": {...}}'

Run as a file, not imported by the tests: a kill -9 must hit a real process.
"""

import json
import signal
import sys
import threading

from center.receiver import run_receiver
from center.settings import CenterSettings


def center(cfg: dict) -> None:
    """Run the receiver until SIGTERM (or a SIGKILL, which is the point)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = CenterSettings.model_validate(cfg)
    print("center up", flush=True)
    run_receiver(settings, stop)


if __name__ == "__main__":
    center(json.loads(sys.argv[1]))
