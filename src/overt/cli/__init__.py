"""The `overt` command line."""
