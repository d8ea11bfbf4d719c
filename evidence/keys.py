"""Key files of a roadside unit or a center, as ``zhichao keys new`` writes them.

A roadside unit needs two key pairs: Ed25519 to sign its packets (``NAME.sign``, the
private key in PEM, mode 0600; ``NAME.sign.pub``, what the center enrols) and CURVE to
encrypt and authenticate its connection (``NAME.key`` public, ``NAME.key_secret`` both
halves, mode 0600, the ZeroMQ certificate format). A center needs the CURVE pair only.
Existing files are never overwritten.

``zhichao keys rotate`` keeps the old files under a dated name (``NAME.20261206T013000Z.sign``
and so on: the moment of the rotation, UTC) and writes new ones under the plain names, so a
unit restarted with the same settings signs and connects with the new keys, and the old
ones are at hand until the center's overlap ends (``zhichao center devices rotate``).
"""

import os
import tempfile
from datetime import UTC, datetime
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


SUFFIXES = (".key", ".key_secret", ".sign", ".sign.pub")


def rotate_keys(out: Path, name: str, now: datetime | None = None
                ) -> tuple[list[Path], list[Path]]:
    """Move the key files of ``name`` aside under a dated name and write new ones of the
    same kinds; returns (kept old files, new files). KeyFileError if there is nothing to
    rotate or a dated name is taken; the old files are put back if the new ones fail."""
    out = Path(out)
    old = [out / f"{name}{s}" for s in SUFFIXES if (out / f"{name}{s}").exists()]
    if not any(p.name.endswith(".key_secret") for p in old):
        raise KeyFileError(f"{out / name}.key_secret: no key to rotate (zhichao keys new "
                           "makes the first)")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    kept = [p.with_name(f"{name}.{stamp}{p.name[len(name):]}") for p in old]
    for path in kept:
        if path.exists():
            raise KeyFileError(f"{path}: exists already; a key is never overwritten")
    for src, dst in zip(old, kept, strict=True):
        os.replace(src, dst)
    try:
        new = make_keys(out, name, curve_only=not any(p.name.endswith(".sign") for p in old))
    except BaseException:
        for src, dst in zip(old, kept, strict=True):
            os.replace(dst, src)
        raise
    return kept, new
