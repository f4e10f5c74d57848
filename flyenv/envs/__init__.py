"""Vectorized imitation environments on top of `flyenv.sim`.

Not implemented yet (tracked as its own issue); importing this package gives nothing else.
"""
