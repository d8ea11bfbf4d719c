"""Calibration factors by speed and temperature, fitted from reference-truck runs,
auto-calibration from traffic and accuracy classes (OIML R134, JJG 907, COST 323).
"""
