"""The device's signature over a packet, and the check of a packet with its images.

A roadside unit signs the packet's canonical bytes with its Ed25519 key; the images are
covered because the packet names each by its SHA-256 and size. :func:`verify` is what the
center runs on everything that arrives: signature first (altered bytes anywhere in the
metadata fail there), then the schema, then every image against its reference, so an error
says which part failed ("image 2 (rear): SHA-256 does not match its reference").

Keys are made, stored and used for signing with the cryptography package; the center's
check runs on libsodium (PyNaCl, from the same PyCA maintainers), which verifies an
Ed25519 signature in about half the CPU time of the OpenSSL build in the cryptography
wheel (65 against 120 µs measured), and the center verifies every packet. libsodium is
the stricter of the two (it also refuses small-order keys and non-canonical encodings,
which an honest signature never has), so nothing the device signed is refused.

Key files are PEM: the private key PKCS #8, unencrypted (the unit starts unattended),
written with mode 0600; the public key SubjectPublicKeyInfo, which is what the center
enrols.
"""

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from evidence.packet import Packet, PacketError, canonical_bytes, decode_packet, packet_hash
from zhichao.errors import ZhichaoError

SIGNATURE_BYTES = 64


class KeyFileError(ZhichaoError):
    """A key file is missing, unreadable, or not the kind of key expected."""


@dataclass(frozen=True)
class SignedPacket:
    """A packet as it travels and is stored: its canonical bytes, the device's signature
    over them, and the image bytes in the order of ``packet.images``."""

    meta: bytes
    signature: bytes
    images: tuple[bytes | memoryview, ...] = field(default=())
    """Bytes, or read-only views of the frames they came in (the center hashes and writes
    them where they arrived, without a copy)."""

    @cached_property
    def packet(self) -> Packet:
        """The decoded packet (PacketError if the bytes are not one)."""
        return decode_packet(self.meta)

    @cached_property
    def hash(self) -> str:
        """The packet's hash, the next packet's ``previous_hash``."""
        return packet_hash(self.meta)

    @property
    def size(self) -> int:
        """Bytes on the wire, images included."""
        return len(self.meta) + len(self.signature) + sum(len(i) for i in self.images)


def sign(packet: Packet, images: Sequence[bytes], key: Ed25519PrivateKey) -> SignedPacket:
    """Sign a packet; the images must be those its references name, in their order (a
    mismatch is refused here rather than found at the center)."""
    signed_images = tuple(bytes(i) for i in images)
    check_images(packet, signed_images)
    meta = canonical_bytes(packet)
    signed = SignedPacket(meta, key.sign(meta), signed_images)
    signed.__dict__["packet"] = packet  # already decoded: spare the caller a second parse
    return signed


def verify(signed: SignedPacket, public_key: Ed25519PublicKey) -> Packet:
    """The packet if the signature, schema and every image hold; otherwise a PacketError
    (PacketVersionError for an unknown major schema) saying what failed.

    The bytes are not re-encoded to check they are canonical: the signature and the chain
    cover the bytes as sent, so a re-encoding would cost a third of the verification and
    protect nothing."""
    if len(signed.signature) != SIGNATURE_BYTES:
        raise PacketError(f"signature has {len(signed.signature)} bytes, "
                          f"expected {SIGNATURE_BYTES}")
    try:
        crypto_sign_open(signed.signature + signed.meta, public_key.public_bytes_raw())
    except BadSignatureError:
        raise PacketError("signature does not match the packet bytes and the device's "
                          "key (altered on the way, or signed by another key)") from None
    packet = signed.packet
    check_images(packet, signed.images)
    return packet


def check_images(packet: Packet, images: Sequence[bytes | memoryview]) -> None:
    """Every image matches its reference by count, size and SHA-256."""
    if len(images) != len(packet.images):
        raise PacketError(f"packet {packet.device_id}#{packet.sequence} names "
                          f"{len(packet.images)} images, {len(images)} came with it")
    for n, (ref, data) in enumerate(zip(packet.images, images, strict=True), start=1):
        if len(data) != ref.size:
            raise PacketError(f"image {n} ({ref.role}): {len(data)} bytes, its reference "
                              f"says {ref.size}")
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise PacketError(f"image {n} ({ref.role}): SHA-256 does not match its reference")


def new_signing_key() -> Ed25519PrivateKey:
    """A fresh device signing key."""
    return Ed25519PrivateKey.generate()


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The public key as PEM, the form the center enrols."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def write_signing_key(key: Ed25519PrivateKey, private_path: Path,
                      public_path: Path) -> None:
    """Write the private key (mode 0600, never over an existing file) and its public key."""
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    for path in (private_path, public_path):
        if Path(path).exists():
            raise KeyFileError(f"{path}: exists already; a key is never overwritten")
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    Path(public_path).write_bytes(public_pem(key))


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The device's private key from its PEM file."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the signing key: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: a {type(key).__name__}, expected an Ed25519 key")
    return key


def load_public_key(pem: bytes | str, source: str = "public key") -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text (``source`` names it in errors)."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{source}: not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{source}: a {type(key).__name__}, expected an Ed25519 key")
    return key
