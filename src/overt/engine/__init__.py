"""The engine: the administration node (API, database, jobs, monitor, registry, identity)."""
