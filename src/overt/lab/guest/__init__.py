"""Overt's test guest: a tiny Linux built from Debian packages, booted by tests and the lab."""

from overt.lab.guest.builder import BOOT_MARKER, COUNTER_PREFIX, GuestImage, build_guest_image

__all__ = ["BOOT_MARKER", "COUNTER_PREFIX", "GuestImage", "build_guest_image"]
