"""Signing and verifying packets, key files, and the wire messages of evidence."""

import json
import random
import stat

import pytest
from cryptography.exceptions import InvalidSignature

from evidence.packet import PacketError, PacketVersionError
from evidence.signing import (
    KeyFileError,
    SignedPacket,
    load_public_key,
    load_signing_key,
    new_signing_key,
    public_pem,
    sign,
    verify,
    write_signing_key,
)
from evidence.wire import (
    ACK,
    PACKET,
    Ack,
    ack_frames,
    packet_frames,
    parse_ack,
    parse_packet,
)
from sim.evidence import draft, fake_jpeg

KEY = new_signing_key()
IMAGES = (fake_jpeg(2000, 1), fake_jpeg(3000, 2), fake_jpeg(2500, 3))


def signed_overload() -> SignedPacket:
    return sign(draft(suspected=True, images=IMAGES), IMAGES, KEY)


def test_a_signed_packet_verifies_and_round_trips_the_wire():
    signed = signed_overload()
    back = parse_packet(packet_frames(signed))
    assert back == signed
    packet = verify(back, KEY.public_key())
    assert packet == signed.packet
    assert [r.role for r in packet.images] == ["front", "side", "rear"]
    assert len(signed.hash) == 64 and signed.size > sum(map(len, IMAGES))



def test_image_frames_received_as_views_are_checked_where_they_arrived():
    """The center hands the received frames over as memoryviews: the images stay views
    of those very buffers (no copy), and a byte changed in one is still caught."""
    signed = signed_overload()
    buffers = [bytearray(f) for f in packet_frames(signed)]
    back = parse_packet([memoryview(b) for b in buffers])
    assert all(isinstance(i, memoryview) and i.obj is buffers[3 + n]
               for n, i in enumerate(back.images))
    assert isinstance(back.meta, bytes) and verify(back, KEY.public_key()) == signed.packet
    buffers[4][7] ^= 0x01
    with pytest.raises(PacketError, match=r"image 2 \(side\): SHA-256"):
        verify(back, KEY.public_key())

def test_signing_is_deterministic_over_canonical_bytes():
    a, b = signed_overload(), signed_overload()
    assert a.meta == b.meta and a.signature == b.signature  # Ed25519 is deterministic
    assert json.loads(a.meta)["schema"] == "zhichao.evidence/1.2"


def test_a_flipped_byte_in_an_image_is_refused_naming_the_image():
    signed = signed_overload()
    bad = bytearray(signed.images[2])
    bad[100] ^= 0x01
    altered = SignedPacket(signed.meta, signed.signature,
                           (*signed.images[:2], bytes(bad)))
    with pytest.raises(PacketError, match=r"image 3 \(rear\): SHA-256 does not match"):
        verify(altered, KEY.public_key())


def test_a_flipped_byte_in_the_metadata_is_refused_by_the_signature():
    signed = signed_overload()
    meta = bytearray(signed.meta)
    i = meta.index(b'"gross_kg":') + len(b'"gross_kg":')
    meta[i] = ord("4") if meta[i] != ord("4") else ord("3")
    with pytest.raises(PacketError, match="signature does not match"):
        verify(SignedPacket(bytes(meta), signed.signature, signed.images), KEY.public_key())


def test_a_missing_or_shortened_image_is_refused():
    signed = signed_overload()
    with pytest.raises(PacketError, match="names 3 images, 2 came"):
        verify(SignedPacket(signed.meta, signed.signature, signed.images[:2]),
               KEY.public_key())
    short = (signed.images[0][:-1], *signed.images[1:])
    with pytest.raises(PacketError, match=r"image 1 \(front\): 1999 bytes"):
        verify(SignedPacket(signed.meta, signed.signature, short), KEY.public_key())


def test_another_key_is_refused():
    with pytest.raises(PacketError, match="signature does not match"):
        verify(signed_overload(), new_signing_key().public_key())


def test_the_center_check_agrees_with_the_signing_library():
    """Signatures are made with cryptography (OpenSSL) and checked with libsodium: over
    many keys, every honest signature passes both, and every signature or message with
    one bit flipped, at every position of the signature, fails both."""
    rng = random.Random(7)
    for n in range(64):
        key = new_signing_key()
        meta = sign(draft(n=n), (), key).meta
        signature = key.sign(meta)
        verify(SignedPacket(meta, signature), key.public_key())
        assert openssl_accepts(key.public_key(), signature, meta)
        bad_signature = bytearray(signature)
        bad_signature[n] ^= 1 << rng.randrange(8)
        bad_meta = bytearray(meta)
        bad_meta[rng.randrange(len(meta))] ^= 1 << rng.randrange(8)
        for s, m in ((bytes(bad_signature), meta), (signature, bytes(bad_meta))):
            assert not openssl_accepts(key.public_key(), s, m)
            with pytest.raises(PacketError):
                verify(SignedPacket(m, s), key.public_key())


def openssl_accepts(public_key, signature: bytes, message: bytes) -> bool:
    """cryptography's own verdict on a signature."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def test_an_unknown_major_schema_is_refused_clearly():
    data = json.loads(sign(draft(), (), KEY).meta)
    data["schema"] = "zhichao.evidence/2.0"
    meta = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(PacketVersionError, match=r"major version 2; this center reads 1\.x"):
        verify(SignedPacket(meta, KEY.sign(meta)), KEY.public_key())


def test_sign_refuses_images_that_are_not_the_referenced_ones():
    with pytest.raises(PacketError, match="image 2"):
        sign(draft(suspected=True, images=IMAGES), (IMAGES[0], IMAGES[0], IMAGES[2]), KEY)


def test_key_files_round_trip_with_a_private_mode(tmp_path):
    key = new_signing_key()
    write_signing_key(key, tmp_path / "d.sign", tmp_path / "d.sign.pub")
    assert stat.S_IMODE((tmp_path / "d.sign").stat().st_mode) == 0o600
    loaded = load_signing_key(tmp_path / "d.sign")
    assert public_pem(loaded) == (tmp_path / "d.sign.pub").read_bytes() == public_pem(key)
    pub = load_public_key((tmp_path / "d.sign.pub").read_text())
    assert verify(sign(draft(), (), loaded), pub).sequence == 1
    with pytest.raises(KeyFileError, match="exists already"):
        write_signing_key(key, tmp_path / "d.sign", tmp_path / "other.pub")


def test_bad_key_files_are_named(tmp_path):
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(KeyFileError, match="junk: not an unencrypted PEM private key"):
        load_signing_key(tmp_path / "junk")
    with pytest.raises(KeyFileError, match="missing: cannot read the signing key"):
        load_signing_key(tmp_path / "missing")
    with pytest.raises(KeyFileError, match="device x: not a PEM public key"):
        load_public_key("nope", "device x")


def test_acks_round_trip_and_bad_frames_are_packet_errors():
    ack = Ack("refused", "dev-1", (1, 2, 2**40), "signature: bad")
    assert parse_ack(ack_frames(ack)) == ack
    assert parse_ack(ack_frames(Ack("ok", "dev-1", ()))).sequences == ()
    with pytest.raises(PacketError, match="not an ack message"):
        parse_ack([ACK, b"ok"])
    with pytest.raises(PacketError, match="not a multiple of 8"):
        parse_ack([ACK, b"ok", b"d", b"123", b""])
    with pytest.raises(PacketError, match="status 'maybe'"):
        parse_ack([ACK, b"maybe", b"d", b"", b""])
    with pytest.raises(PacketError, match="not a packet message"):
        parse_packet([PACKET, b"{}"])
    with pytest.raises(PacketError, match="not a packet message"):
        parse_packet([b"XXXX", b"{}", b"sig"])
