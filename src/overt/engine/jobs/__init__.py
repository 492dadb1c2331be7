"""Jobs (the seed's taskomatic): persisted actions, claimed by workers, run by handlers."""
