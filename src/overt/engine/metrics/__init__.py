"""Prometheus figures of the engine: the fleet from the database, the API's latency, the process."""
