"""Errors of the hardware layer.

``ProtocolError`` is a bad frame or record (checksum, length, field): counted and skipped,
never fatal. ``DeviceError`` is a device that cannot be reached or stops answering: the
driver reports it in its health status and reconnects with a doubling delay.
"""

from zhichao.errors import ZhichaoError


class ProtocolError(ZhichaoError):
    """Bytes that do not form a valid frame or record of the protocol."""


class DeviceError(ZhichaoError):
    """A device that cannot be opened, or stopped answering."""
