"""Node provisioning: the node images the engine serves and the profiles saying which
machine (by MAC) boots which, with what kernel arguments, into which cluster."""
