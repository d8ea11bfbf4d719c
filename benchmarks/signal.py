"""Benchmark of the signal loop: speed against one numpy pass, accuracy against truth.

Speed: a simulated 4-lane site (4 channels a lane, 10 kHz) for ``--duration-s`` seconds,
fed to the loop in blocks of ``--block-s``; the baseline is one ``np.sum`` over the same
int16 buffer, timed in the same process, in turns with the loop, so the ratio holds on a
noisy machine where absolute times drift. Best of ``--repeat`` rounds each.

Accuracy: a longer run (``--accuracy-s``) with the default dynamics, noise and bad
driving, and the same traffic without dynamics, noise or bad driving ("ideal").

    python benchmarks/signal.py            # a table
    python benchmarks/signal.py --json     # ... and one JSON object as the last line
"""

import sys
from pathlib import Path

# Run as a file, this folder comes first on sys.path, and this file would stand in for
# the standard library's `signal` module: take the folder off before importing anything.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks.timing

import argparse

import numpy as np
from rich.console import Console

from benchmarks.timing import best_times, report
from drivers.strips import StripArray
from edge.settings import EdgeSettings
from edge.weighing import load_rules_for, signal_loop
from sim.render import Renderer, SensorNoise
from sim.score import score
from sim.traffic import TrafficSettings, generate_traffic


def weigh(settings: EdgeSettings, rules: object, blocks: list[np.ndarray]) -> list:
    """Run the loop over pre-rendered blocks; every vehicle it reports."""
    loop = signal_loop(settings, rules)
    out = [v for b in blocks for v in loop.process(b)]
    return out + loop.flush()


def speed(settings: EdgeSettings, rules: object, args: argparse.Namespace) -> dict:
    """Throughput figures on the default traffic."""
    site = settings.site
    traffic = generate_traffic(site, args.duration_s, seed=args.seed)
    blocks = list(Renderer(site, traffic, seed=args.seed).blocks(args.duration_s, args.block_s))
    whole = np.concatenate(blocks, axis=1)
    t_numpy, t_loop = best_times([lambda: np.sum(whole),
                                  lambda: weigh(settings, rules, blocks)], args.repeat)
    return {
        "duration_s": args.duration_s, "lanes": site.lanes, "channels": site.n_channels,
        "fs_hz": site.fs_hz, "block_s": args.block_s, "batch_s": settings.signal.batch_s,
        "vehicles_in_speed_run": len(traffic),
        "samples_per_s": whole.size / t_loop, "x_realtime": args.duration_s / t_loop,
        "loop_ms": 1e3 * t_loop, "numpy_pass_ms": 1e3 * t_numpy,
        "ratio_to_numpy_pass": t_loop / t_numpy,
    }


def accuracy(settings: EdgeSettings, rules: object, args: argparse.Namespace, ideal: bool
             ) -> dict:
    """Accuracy over a long run, with default or with ideal conditions."""
    site: StripArray = settings.site
    traffic_settings = (TrafficSettings(dynamics=False, bad_share=0.0) if ideal
                        else TrafficSettings())
    truth = generate_traffic(site, args.accuracy_s, seed=args.seed + 1,
                             settings=traffic_settings)
    renderer = Renderer(site, truth, seed=args.seed + 1,
                        noise=SensorNoise.none() if ideal else None)
    blocks = list(renderer.blocks(args.accuracy_s, args.block_s))
    return score(site, truth, weigh(settings, rules, blocks)).summary()


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--accuracy-s", type=float, default=600.0)
    parser.add_argument("--block-s", type=float, default=1.0)
    parser.add_argument("--batch-s", type=float, help="signal.batch_s (default: settings')")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    args = parser.parse_args()
    settings = EdgeSettings()
    if args.batch_s is not None:
        settings = settings.model_copy(
            update={"signal": settings.signal.model_copy(update={"batch_s": args.batch_s})})
    rules = load_rules_for(settings)
    console = Console(stderr=args.json)
    # plain lines, no live display: a refreshing spinner thread would take the GIL
    # from the loop being timed
    console.print(f"timing the loop: {args.duration_s:g} s of a {settings.site.lanes}-lane "
                  f"site, best of {args.repeat} rounds")
    result = speed(settings, rules, args)
    console.print(f"scoring accuracy over {args.accuracy_s:g} s: default dynamics, noise "
                  "and bad driving; then none of them")
    real = accuracy(settings, rules, args, ideal=False)
    ideal = accuracy(settings, rules, args, ideal=True)
    result.update(real)
    result.update({f"ideal_{k}": v for k, v in ideal.items()})
    report("signal loop", result, console, args.json)


if __name__ == "__main__":
    main()
