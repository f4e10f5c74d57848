"""The package version, importable from every layer without import cycles."""

__version__ = "0.1.0"
