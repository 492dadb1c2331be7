"""Enrollment: which nodes become hosts of this engine (approval, certificates, broker accounts)."""
