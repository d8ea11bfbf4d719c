"""Hardware at the edge of the system: bytes in, typed frames out.

One module per hardware component. Drivers import none of ``overload``, ``evidence``,
``edge`` or ``center``: hardware code knows bytes, frames and the physical layout of the
sensors, nothing of the law.
"""
