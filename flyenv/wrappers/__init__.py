"""Gymnasium vector wrappers and RL-library adapters for flyenv environments.

Not implemented yet (tracked as its own issue); importing this package gives nothing else.
"""
