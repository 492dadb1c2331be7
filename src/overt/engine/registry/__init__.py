"""The registry (the seed's host-browser): node enrollment, approval and certificates."""
