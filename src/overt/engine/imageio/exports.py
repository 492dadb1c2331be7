"""A volume exported by qemu-nbd on the engine's machine (local domains of `overt demo`)."""

from __future__ import annotations

from typing import ClassVar

from overt.engine.model.errors import Unavailable
from overt.imageio import exports as _shared


class NbdExport(_shared.NbdExport):
    fail: ClassVar[type[Exception]] = Unavailable
