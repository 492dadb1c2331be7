"""Storage leases: delta leases on a shared domain, kept by the node's lease keeper."""
