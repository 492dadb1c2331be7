"""The monitor (the seed's db-omatic): applies node events, watches heartbeats, reconciles."""
