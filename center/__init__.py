"""The center: receiver, store, device registry, grading, the case workflow, web pages.

Imports ``evidence`` and ``overload``; never ``edge``: the two ends meet only on the wire.
"""
