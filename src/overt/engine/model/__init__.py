"""The domain model: oVirt's names and status values, state machines and rules. No I/O."""
