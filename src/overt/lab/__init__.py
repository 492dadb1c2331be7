"""The lab: a small datacenter on one Linux machine (network namespaces as hosts)."""
