"""Placing VMs on hosts."""
