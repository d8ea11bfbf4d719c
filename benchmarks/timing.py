"""What every script in ``benchmarks/`` shares: fair timing and one way of reporting.

Machines here are noisy, so figures are ratios against a baseline timed in the same run,
in turns with what is measured; and nothing is drawn live while timing (a refreshing
display's thread would take the GIL from the code being timed).
"""

import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table


def best_times(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """Shortest wall time of each function over ``repeat`` rounds, seconds.

    The functions take turns within each round, so a slow spell of the machine hits
    them alike and the ratio of the minima stays fair.

    Examples
    --------
    >>> fast, slow = best_times([lambda: None, lambda: time.sleep(0.01)], repeat=2)
    >>> fast < slow
    True
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def report(title: str, figures: dict[str, Any], console: Console, as_json: bool) -> None:
    """The figures as a table, and with ``as_json`` one JSON object as the last line."""
    table = Table(title=title, show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    if as_json:
        print(json.dumps(figures))
