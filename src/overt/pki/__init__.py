"""Keys and certificates: the engine CA, node and engine certificates (X.509, via cryptography)."""
