"""``zhichao center keys rotate``: a new CURVE key pair for the center, served beside the
old one until a date.

A CURVE server socket has one key pair, and every unit names the center's public key, so
the center cannot change its key under the units: the new key is served on endpoints of
its own (``receiver.rotation``) while the old one still serves its units, and each unit is
moved to the new key (its public key file and endpoint) at its next visit. After the
old key's last day its socket is closed; a unit still on it then fails over to the new
endpoint if it lists it, and is refused otherwise.

The command writes the new pair next to the current secret key file, under a dated name
(``center.20261206T031500Z.key`` and ``.key_secret``: the moment, UTC), never moving or
overwriting the running key, and prints the settings to add at the center and at the units.
"""

import argparse
from datetime import UTC, datetime
from pathlib import Path

from center.device_keys import end_of_day
from center.settings import CenterSettings
from evidence.keys import make_keys
from zhichao.cli.center_common import config_option, console, settings_of
from zhichao.cli.device_keys import _day
from zhichao.errors import ConfigError
from zhichao.settings import endpoint


def add_center_key_commands(center: argparse._SubParsersAction) -> None:
    """Register ``center keys rotate``."""
    keys = center.add_parser("keys", help="the center's own CURVE key").add_subparsers(
        dest="center_keys_command", metavar="ACTION", required=True)
    rot = config_option(keys.add_parser(
        "rotate", help="a new CURVE key, served beside the old one until a date",
        description=__doc__.split("\n\n")[1] + " " + __doc__.split("\n\n")[2]))
    rot.add_argument("--until", required=True, type=_day, metavar="YYYY-MM-DD",
                     help="the old key's last day (China time): long enough to visit or "
                     "reconfigure every unit")
    rot.add_argument("--listen", required=True, action="append", metavar="ENDPOINT",
                     help="where the new key is served (tcp://HOST:PORT), other than the "
                     "receiver's listen; repeat for several")
    rot.set_defaults(run=run_center_keys_rotate)


def _new_listen(settings: CenterSettings, given: list[str]) -> list[str]:
    """The new key's endpoints, checked as the settings will check them."""
    try:
        listen = [endpoint(e, bind=True) for e in given]
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}") from None
    shared = sorted(set(listen) & set(settings.receiver.listen))
    if shared:
        raise ConfigError(f"--listen {', '.join(shared)}: the old key is served there "
                          "(receiver.listen); one address serves one key")
    return listen


def _as_written(path: Path, settings: CenterSettings) -> Path:
    """A path as the settings file would name it: relative to its folder when inside."""
    try:
        return path.relative_to(settings.base_dir)
    except ValueError:
        return path


def _as_unit_sees(bound: str) -> str:
    """A bound endpoint as a unit connects to it: a wildcard host becomes CENTER (the
    center's address, which the unit knows)."""
    for wildcard in ("tcp://0.0.0.0:", "tcp://*:"):
        if bound.startswith(wildcard):
            return "tcp://CENTER:" + bound[len(wildcard):]
    return bound


def run_center_keys_rotate(args: argparse.Namespace) -> int:
    """Write the new key pair; print what to add at the center and at each unit."""
    settings = settings_of(args)
    r = settings.receiver
    if r.rotation is not None:
        raise ConfigError(f"receiver.rotation: a rotation is under way (the old key until "
                          f"{r.rotation.old_key_until}); finish it first: "
                          "server_secret_key and listen set to the rotation's, the "
                          "rotation section removed")
    listen = _new_listen(settings, args.listen)
    old = r.server_secret_key
    stem = old.name.split(".", 1)[0] or "center"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    public, secret = make_keys(old.parent, f"{stem}.{stamp}", curve_only=True)
    out = console()
    out.print(f"{public}  new CURVE public key (give it to every unit)")
    out.print(f"{secret}  new CURVE key pair (secret, 0600)")
    out.print("\nAdd to the center's settings under receiver, then restart the center:\n")
    out.print(f"  rotation:\n    server_secret_key: {_as_written(secret, settings)}\n    listen: "
              f"[{', '.join(repr(e) for e in listen)}]\n    old_key_until: {args.until}",
              markup=False)
    out.print(f"\nThe old key ({old}, on {', '.join(r.listen)}) is served until "
              f"{end_of_day(args.until):%Y-%m-%d %H:%M} UTC, then its socket is closed.")
    out.print(f"\nAt each unit: copy {public.name} into its keys folder and list the new "
              "endpoint first, the old one after it, until the old key's last day:\n",
              markup=False)
    new, current = _as_unit_sees(listen[0]), _as_unit_sees(r.listen[0])
    out.print(f"  endpoints: ['{new}', '{current}']\n  center_public_keys:\n"
              f"    '{new}': keys/{public.name}", markup=False)
    out.print("\nAfter that day, at the center: server_secret_key and listen set to the "
              "rotation's, and the rotation section removed.")
    return 0

