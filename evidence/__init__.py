"""The evidence packet: schema, canonical encoding, image digests, signature, hash chain.

Stands below both ends: the edge writes packets, the center verifies them; imports
neither.
"""
