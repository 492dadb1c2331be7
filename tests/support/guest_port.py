"""Running commands inside the test guest through its command port (src/overt/lab/guest/
files/command-port): a second serial port, a UNIX socket on the host, that tests add to the
domain XML Overt wrote. What a test asserts is then seen from inside the guest."""

from __future__ import annotations

import itertools
import re
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

_DONE = re.compile(rb"@@overt-done (\d+) (\d+)@@")


def with_command_port(domain_xml: str, path: Path) -> str:
    """`domain_xml` with a second serial port (ttyS1 in the guest) listening at `path`."""
    root = ET.fromstring(domain_xml)
    devices = root.find("devices")
    assert devices is not None
    serial = ET.SubElement(devices, "serial", type="unix")
    ET.SubElement(serial, "source", mode="bind", path=str(path))
    ET.SubElement(serial, "target", port="1")
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class Ran:
    status: int
    output: str


class GuestPort:
    """A connection to one guest's command port."""

    def __init__(self, path: Path, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise AssertionError(f"the guest's command port {path} never answered"
                                         ) from None
                time.sleep(0.2)
        self._ids = itertools.count(1)
        self._buffer = b""

    def close(self) -> None:
        self.sock.close()

    def wait_ready(self, timeout: float = 60) -> None:
        """Poll with a no-op command until the guest's reader answers (what was written
        before it opened the port is lost)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ran = self._try("true", 2)
            if ran is not None:
                return
        raise AssertionError(f"the guest's command port did not answer within {timeout} s")

    def run(self, command: str, timeout: float = 30) -> Ran:
        ran = self._try(command, timeout)
        if ran is None:
            raise AssertionError(f"{command!r} did not finish in the guest within {timeout} s")
        return ran

    def _try(self, command: str, timeout: float) -> Ran | None:
        assert "\n" not in command
        ident = next(self._ids)
        self.sock.sendall(f"{ident} {command}\n".encode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while (found := _DONE.search(self._buffer)) is not None:
                output = self._buffer[:found.start()].decode(errors="replace")
                self._buffer = self._buffer[found.end():]
                if int(found.group(1)) == ident:  # else: an earlier, abandoned command's
                    return Ran(int(found.group(2)), output.replace("\r", ""))
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                raise AssertionError("the guest's command port closed")
            self._buffer += chunk
        # drop what an unanswered command left, so the next one starts clean
        self._buffer = b""
        return None
