"""The root of every error zhichao reports to a person.

Each layer raises its own subclass (``ConfigError`` here, ``RuleError`` in overload,
``SignalError`` in edge.signal, ...); the command line catches ``ZhichaoError`` and prints
the message without a traceback, so every message must say what failed, where, the value
received and what is allowed.
"""


class ZhichaoError(Exception):
    """Base class of all errors meant for the person running zhichao."""


class ConfigError(ZhichaoError):
    """A settings file is missing, unreadable or holds a wrong value."""
