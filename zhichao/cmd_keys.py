"""``zhichao keys new``: the key files of a roadside unit or of a center.

A roadside unit needs two key pairs: Ed25519 to sign its packets (``NAME.sign``, the
private key in PEM, mode 0600; ``NAME.sign.pub``, what the center enrols) and CURVE to
encrypt and authenticate its connection (``NAME.key`` public, ``NAME.key_secret`` both
halves, mode 0600, the ZeroMQ certificate format). A center needs the CURVE pair only
(``--curve-only``). Existing files are never overwritten.
"""

import argparse
import os
import tempfile
from pathlib import Path

import zmq.auth
from rich.console import Console

from evidence.signing import KeyFileError, new_signing_key, write_signing_key


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


def make_keys(out: Path, name: str, *, curve_only: bool = False) -> list[Path]:
    """Write the key files; returns their paths. KeyFileError if a name is taken."""
    if not name or "/" in name or name.startswith("."):
        raise KeyFileError(f"option --name {name!r}: a plain file name stem is needed")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curve = [out / f"{name}.key", out / f"{name}.key_secret"]
    sign = [] if curve_only else [out / f"{name}.sign", out / f"{name}.sign.pub"]
    for path in curve + sign:
        if path.exists():
            raise KeyFileError(f"{path}: exists already; a key is never overwritten")
    # zmq writes with the default mode: make the pair in a private folder, then move it.
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        os.chmod(tmp, 0o700)
        public, secret = zmq.auth.create_certificates(tmp, name)
        os.chmod(secret, 0o600)
        os.replace(public, curve[0])
        os.replace(secret, curve[1])
    if sign:
        write_signing_key(new_signing_key(), sign[0], sign[1])
    return curve + sign


def run(args: argparse.Namespace) -> int:
    """Write the files and say which is which."""
    paths = make_keys(args.out, args.name, curve_only=args.curve_only)
    console = Console(highlight=False)
    roles = ["CURVE public key (give it to the center)", "CURVE key pair (secret, 0600)",
             "Ed25519 signing key (secret, 0600)", "Ed25519 public key (give it to the center)"]
    for path, role in zip(paths, roles, strict=False):
        console.print(f"{path}  {role}")
    return 0
