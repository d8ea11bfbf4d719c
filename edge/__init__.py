"""The roadside agent: settings, the signal loop over strip-sensor samples, and (next) the
plate reader, evidence packets, the durable outbox and the sender.

Imports ``drivers``, ``overload``, ``evidence`` and ``calibration``; never ``center``.
"""
