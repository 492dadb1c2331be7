"""Overt: an open virtualization manager after the oVirt architecture."""

__version__ = "0.1.0"
