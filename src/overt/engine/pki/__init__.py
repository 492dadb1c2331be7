"""The engine's certificate authority and the life of its certificates (issue, pin, rotate, recover)."""
