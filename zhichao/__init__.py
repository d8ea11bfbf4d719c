"""zhichao (治超): off-site overload enforcement of freight trucks.

This package holds the shared plumbing — errors, settings loading, the location of the
shipped configuration, the command line. The layers live beside it as top-level packages:
``drivers`` (hardware), ``edge`` (roadside agent), ``overload`` (the law), ``evidence``
(the packet), ``calibration`` and ``center``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zhichao")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
