"""This machine's services and tools: running commands, starting daemons."""
