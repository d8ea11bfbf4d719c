"""``zhichao center devices rotate`` and ``revoke``: a unit's keys changed with an overlap,
and a stolen unit's keys refused (:mod:`center.device_keys` says what each means)."""

import argparse
from datetime import date
from pathlib import Path

import zmq.auth

from center.device_keys import (
    DeviceKeyError,
    device_keys,
    end_of_day,
    revoke_keys,
    rotate_device,
)
from center.service import open_db
from zhichao.cli.center_common import config_option, console, settings_of


def add_key_commands(devices: argparse._SubParsersAction) -> None:
    """Register ``devices rotate`` and ``devices revoke``."""
    rot = config_option(devices.add_parser(
        "rotate", help="enrol a unit's new keys, the old ones accepted until a date",
        description="Make the unit's new keys (zhichao keys rotate) its current ones; the "
        "keys they replace are accepted until the end of --old-key-until (China time) by "
        "the packets' receipt at the center, then refused."))
    rot.add_argument("--id", required=True, metavar="ID", help="device id")
    rot.add_argument("--sign-key", type=Path, metavar="PUBFILE",
                     help="the unit's new NAME.sign.pub")
    rot.add_argument("--curve-key", type=Path, metavar="PUBFILE",
                     help="the unit's new NAME.key (CURVE public key)")
    rot.add_argument("--old-key-until", required=True, type=_day, metavar="YYYY-MM-DD",
                     help="the last day the replaced keys are accepted (longer than the "
                     "unit's outbox backlog may last)")
    rot.set_defaults(run=run_devices_rotate)
    rev = config_option(devices.add_parser(
        "revoke", help="refuse a unit's key from now on",
        description="Refuse a unit's key from now on: its packets are refused with the "
        "reason, a CURVE key cannot connect. Not retroactive: packets stored before stay."))
    rev.add_argument("--id", required=True, metavar="ID", help="device id")
    rev.add_argument("--key", required=True, metavar="FINGERPRINT|all",
                     help="a key's fingerprint (8 or more leading characters), or all")
    rev.add_argument("--reason", required=True, metavar="TEXT",
                     help="why (told to the unit with each refusal)")
    rev.set_defaults(run=run_devices_revoke)
    lst = config_option(devices.add_parser(
        "keys", help="a unit's keys: fingerprints, overlap, revocation"))
    lst.add_argument("--id", required=True, metavar="ID", help="device id")
    lst.set_defaults(run=run_devices_keys)


def _day(text: str) -> date:
    """A date of the command line."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a date YYYY-MM-DD is needed (got {text!r})"
                                         ) from None


def _read(path: Path | None, what: str) -> str | None:
    """A public key file's text (PEM) or CURVE key (Z85); None if not given."""
    if path is None:
        return None
    try:
        if what == "curve":
            return zmq.auth.load_certificate(path)[0].decode("ascii")
        return path.read_text(encoding="ascii")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DeviceKeyError(f"{path}: cannot read the {what} public key: {exc}") from None


def run_devices_rotate(args: argparse.Namespace) -> int:
    """Enrol the new keys; say which keys they replace and until when."""
    engine = open_db(settings_of(args))
    replaced = rotate_device(engine, args.id, sign_public_pem=_read(args.sign_key, "sign"),
                             curve_public=_read(args.curve_key, "curve"),
                             old_until=args.old_key_until)
    out = console()
    for old, new in replaced:
        out.print(f"device {args.id}: {old.kind} key {old.short} accepted until "
                  f"{args.old_key_until} (to {end_of_day(args.old_key_until):%Y-%m-%d %H:%M} "
                  f"UTC), then refused; new {old.kind} key {new[:16]}")
    return 0


def run_devices_revoke(args: argparse.Namespace) -> int:
    """Revoke the keys named; say which."""
    engine = open_db(settings_of(args))
    revoked = revoke_keys(engine, args.id, args.key, args.reason)
    out = console()
    for key in revoked:
        out.print(f"device {args.id}: {key.kind} key {key.short} revoked")
    if not revoked:
        out.print(f"device {args.id}: every key was revoked already")
    return 0


def run_devices_keys(args: argparse.Namespace) -> int:
    """One line a key, the current ones first: kind, fingerprint, state."""
    engine = open_db(settings_of(args))
    with engine.connect() as conn:
        keys = device_keys(conn, args.id)
    if keys is None:
        raise DeviceKeyError(f"device {args.id} is not enrolled")
    out = console()
    for states in (keys.sign, keys.curve):
        for n, k in enumerate(states):
            state = "current" if n == 0 else (
                f"accepted until {k.accepted_until:%Y-%m-%d %H:%M} UTC"
                if k.accepted_until else "retired")
            if k.revoked_at is not None:
                state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M} UTC: {k.revoked_reason}"
            out.print(f"{k.kind:5} {k.fingerprint}  {state}", markup=False)
    return 0
