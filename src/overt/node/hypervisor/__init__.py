"""Hypervisor drivers: the `Hypervisor` interface and its libvirt implementation."""
