"""SIMULATED nodes for scale benchmarks and tests: real agents on a make-believe hypervisor."""
