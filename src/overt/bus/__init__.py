"""Transports between engine and nodes behind one small interface: direct (HTTPS + mTLS), amqp."""
