"""Benchmark of the raw-frame parser: digitiser frames through the framer, against one
numpy pass over the same bytes and against the data rate of a site.

A long buffer of valid digitiser frames (``--channels`` × ``--samples`` each, random
int16 samples; a share ``--corrupt-rate`` with one bit flipped, and as many preceded by
a few bytes of garbage) is fed to :class:`drivers.framing.Framer` in chunks of
``--chunk-bytes``, as reads from a port would come. The baseline is
``np.frombuffer(buf, np.int16).sum()`` over the same bytes (whole int16 words), timed in
the same process, in turns with the parser, best of ``--repeat`` rounds each, so the
ratio holds on a noisy machine. ``x_site_rate`` is the samples decoded per second over
a 4-lane site's rate (4 lanes × 4 channels × 10 kHz = 160 000 samples/s). The CRC
figures compare the table-driven Python CRC with ``binascii.crc_hqx`` (the one the
parser uses).

    python benchmarks/serial.py            # a table
    python benchmarks/serial.py --json     # ... and one JSON object as the last line
"""

import sys
from pathlib import Path

# Run as a file, this folder comes first on sys.path, and this file would stand in for
# pyserial's `serial` module: take the folder off before importing anything.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.timing

import argparse

import numpy as np
from rich.console import Console

from benchmarks.timing import best_times, report
from drivers import digitiser
from drivers.crc import crc16_ccitt, crc16_ccitt_fast
from drivers.framing import Framer
from sim.serial_twins import Corrupter, Corruption

SITE_SAMPLES_PER_S = 4 * 4 * 10_000
"""A 4-lane site: 4 channels a lane (2 rows × 2 halves) at 10 kHz."""




def stream(args: argparse.Namespace) -> tuple[bytes, int]:
    """The byte stream and how many of its frames are intact."""
    rng = np.random.default_rng(args.seed)
    corrupter = Corrupter(Corruption(flip_rate=args.corrupt_rate,
                                     garbage_rate=args.corrupt_rate), seed=args.seed)
    parts, intact = [], 0
    for seq in range(args.frames):
        x = rng.integers(-32768, 32768, (args.channels, args.samples), dtype=np.int16)
        data, damaged = corrupter.apply(digitiser.encode_frame(x, seq, seq * 10_000))
        parts.append(data)
        intact += not damaged
    return b"".join(parts), intact


def parse(buf: bytes, chunk_bytes: int) -> Framer:
    """Feed ``buf`` to a fresh framer in reads of ``chunk_bytes``."""
    framer = Framer(digitiser.CODEC)
    for i in range(0, len(buf), chunk_bytes):
        framer.feed(buf[i:i + chunk_bytes])
    return framer


def crc_speeds(repeat: int) -> dict[str, float]:
    """MB/s of the table-driven CRC and of ``binascii.crc_hqx`` over 256 KiB."""
    data = np.random.default_rng(1).bytes(256 * 1024)
    t_table, t_fast = best_times([lambda: crc16_ccitt(data), lambda: crc16_ccitt_fast(data)],
                                 max(1, repeat // 3))
    return {"crc_table_mb_per_s": len(data) / t_table / 1e6,
            "crc_hqx_mb_per_s": len(data) / t_fast / 1e6}


def run(args: argparse.Namespace) -> dict:
    """All figures."""
    buf, intact = stream(args)
    framer = parse(buf, args.chunk_bytes)
    if framer.frames != intact:
        raise SystemExit(f"parser found {framer.frames} frames, {intact} are intact")
    t_base, t_parse = best_times([lambda: int(np.frombuffer(buf, np.int16, len(buf) // 2).sum()),
                                  lambda: parse(buf, args.chunk_bytes)], args.repeat)
    samples = framer.frames * args.channels * args.samples
    return {
        "frames": args.frames, "channels": args.channels, "samples_per_frame": args.samples,
        "corrupt_rate": args.corrupt_rate, "bytes": len(buf), "chunk_bytes": args.chunk_bytes,
        "frames_decoded": framer.frames, "bad_frames": framer.bad_frames,
        "garbage_bytes": framer.garbage_bytes,
        "frames_per_s": framer.frames / t_parse, "mb_per_s": len(buf) / t_parse / 1e6,
        "samples_per_s": samples / t_parse, "x_site_rate": samples / t_parse / SITE_SAMPLES_PER_S,
        "parse_ms": 1e3 * t_parse, "baseline_ms": 1e3 * t_base,
        "ratio_to_baseline": t_parse / t_base, **crc_speeds(args.repeat),
    }


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--samples", type=int, default=100, help="per channel and frame")
    parser.add_argument("--corrupt-rate", type=float, default=0.01)
    parser.add_argument("--chunk-bytes", type=int, default=65_536)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    # plain lines, no live display: a refreshing thread would take the GIL from the parser
    console.print(f"timing the parser: {args.frames} frames of {args.channels} × "
                  f"{args.samples} samples, best of {args.repeat} rounds")
    result = run(args)
    report("serial raw-frame parser", result, console, args.json)


if __name__ == "__main__":
    main()
