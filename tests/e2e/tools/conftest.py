"""One `overt demo` for the oVirt tools users bring (Ansible's oVirt collection, libgovirt)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.demo.conftest import running_demo
from tests.support.demo import Demo


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    with running_demo() as started:
        yield started
