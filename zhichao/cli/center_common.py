"""What every ``zhichao center`` command shares: the ``--config`` option, the settings it
names, whole-number options and the console."""

import argparse
from pathlib import Path

from rich.console import Console

from center.settings import CenterSettings, load_center_settings


def config_option(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="center settings (YAML, see config/center.example.yaml); "
                   "default: every option's default, database center.db here")
    return p


def count(text: str) -> int:
    """A count of the command line: a whole number ≥ 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 0 (got {text!r})")
    return value


def settings_of(args: argparse.Namespace) -> CenterSettings:
    """The settings file given, or the defaults."""
    return load_center_settings(args.config) if args.config else CenterSettings()


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)
