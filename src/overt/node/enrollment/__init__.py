"""A node's side of enrollment: announcing itself to the engine, and being added by address."""
