"""The demo weighs the same vehicles whether the samples go through the serial driver (as
digitiser frames over a pseudo-terminal) or straight into the loop: the link loses
nothing and changes nothing."""

import re

from zhichao.cli import main


def summary(capsys, via: str) -> str:
    """The demo's summary text for a short run."""
    assert main(["demo", "--duration-s", "30", "--seed", "5", "--via", via]) == 0
    out = capsys.readouterr().out
    return " ".join(out[out.index("summary"):].split())


def test_serial_and_direct_demos_weigh_the_same_vehicles(capsys):
    serial, direct = summary(capsys, "serial"), summary(capsys, "direct")
    counts = re.compile(r"(\d+) vehicles weighed .*?(\d+) within the limit")
    assert counts.search(serial).groups() == counts.search(direct).groups()
    error = re.compile(r"gross weight error ([+-][\d.]+) % mean, ([\d.]+) % std")
    assert error.search(serial).groups() == error.search(direct).groups()
