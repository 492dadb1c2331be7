"""`python -m overt` is the `overt` command."""

from overt.cli.main import app

app(prog_name="overt")
