"""`python -m overt.node.snmp --state-file PATH`: the pass_persist exporter snmpd runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from overt.node.snmp.pass_persist import serve

DEFAULT_STATE_FILE = Path("/var/lib/overt/node/snmp-state.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m overt.node.snmp", description=__doc__)
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE,
                        help="The snapshot the agent writes (%(default)s).")
    args = parser.parse_args(argv)
    serve(args.state_file, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
