"""Which packets the center reads a plate for, decided without the reader's runtime.

The cases thread sorts every batch by this before it loads anything of OpenCV or ONNX
(:mod:`center.plate_reading`, which reads them): the packets that need no reading are
captured first, so none of them waits behind a reading.
"""

from evidence.packet import Packet

READ_ROLES = ("front", "rear")
"""Image roles the center reads plates from."""


def needs_reading(packet: Packet) -> bool:
    """The packet's plate is missing or unread at the roadside, and it has images the
    center can read."""
    plate = packet.plate
    unread = plate is None or plate.unread
    return unread and any(ref.role in READ_ROLES for ref in packet.images)
