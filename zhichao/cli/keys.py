"""``zhichao keys new``: the key files of a roadside unit or of a center.

A roadside unit needs two key pairs: Ed25519 to sign its packets (``NAME.sign``, the
private key in PEM, mode 0600; ``NAME.sign.pub``, what the center enrols) and CURVE to
encrypt and authenticate its connection (``NAME.key`` public, ``NAME.key_secret`` both
halves, mode 0600, the ZeroMQ certificate format). A center needs the CURVE pair only
(``--curve-only``). Existing files are never overwritten.
"""

import argparse
from pathlib import Path

from rich.console import Console

from evidence.keys import make_keys, rotate_keys


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``zhichao keys``."""
    p = sub.add_parser("keys", help="make key files for a roadside unit or a center",
                       description=__doc__.split("\n\n")[0])
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = ksub.add_parser("new", help="write a new set of key files",
                          description=__doc__.split("\n\n")[1])
    new.add_argument("--name", required=True, help="file name stem, e.g. the device id")
    new.add_argument("--out", type=Path, default=Path("keys"),
                     help="folder for the files (default keys/, made if missing)")
    new.add_argument("--curve-only", action="store_true",
                     help="the CURVE pair only (a center's key)")
    new.set_defaults(run=run)
    rot = ksub.add_parser(
        "rotate", help="new key files; the old ones kept under a dated name",
        description="Move NAME's key files aside (NAME.<UTC time>.sign and so on) and write "
        "new ones of the same kinds under the plain names. Give the new public keys to "
        "the center (zhichao center devices rotate), then restart the unit.")
    rot.add_argument("--name", required=True, help="file name stem of the keys to rotate")
    rot.add_argument("--out", type=Path, default=Path("keys"),
                     help="folder of the files (default keys/)")
    rot.set_defaults(run=run_rotate)


def run(args: argparse.Namespace) -> int:
    """Write the files and say which is which."""
    paths = make_keys(args.out, args.name, curve_only=args.curve_only)
    console = Console(highlight=False)
    roles = ["CURVE public key (give it to the center)", "CURVE key pair (secret, 0600)",
             "Ed25519 signing key (secret, 0600)", "Ed25519 public key (give it to the center)"]
    for path, role in zip(paths, roles, strict=False):
        console.print(f"{path}  {role}")
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    """Rotate the files and say which are kept and which are new."""
    kept, new = rotate_keys(args.out, args.name)
    console = Console(highlight=False)
    for path in kept:
        console.print(f"{path}  old, kept")
    for path in new:
        public = path.name.endswith((".key", ".sign.pub"))
        console.print(f"{path}  new{' (give it to the center)' if public else ''}")
    return 0
