"""Reads that services, jobs and the monitor share (a leaf: it imports none of them)."""
