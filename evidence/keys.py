"""Key files of a roadside unit or a center, as ``zhichao keys new`` writes them.

A roadside unit needs two key pairs: Ed25519 to sign its packets (``NAME.sign``, the
private key in PEM, mode 0600; ``NAME.sign.pub``, what the center enrols) and CURVE to
encrypt and authenticate its connection (``NAME.key`` public, ``NAME.key_secret`` both
halves, mode 0600, the ZeroMQ certificate format). A center needs the CURVE pair only.
Existing files are never overwritten.
"""

import os
import tempfile
from pathlib import Path

import zmq.auth

from evidence.signing import KeyFileError, new_signing_key, write_signing_key


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
