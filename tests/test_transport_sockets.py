"""The sockets of the evidence link survive input that stalls at both ends: libzmq 4.3.5
aborts a process whose ZMTP heartbeat fires on such a connection (evidence.wire.
tcp_keepalive has the story). Real CURVE sockets on 127.0.0.1, in a process of their own
so that an abort shows as its exit code."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_stalled_input_at_both_ends_does_not_abort_the_process():
    proc = subprocess.run([sys.executable, str(HERE / "stalled_sockets.py"), "5"],
                          capture_output=True, text=True, timeout=60, cwd=HERE.parent,
                          check=False)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    received = int(proc.stdout.split()[-1])
    assert received > 0, proc.stdout
