"""Offline inverse kinematics: 3D pose recordings to `ReferenceMotion` files.

Not implemented yet (tracked as its own issue); importing this package gives nothing else.
"""
