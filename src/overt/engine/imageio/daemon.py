"""The engine's imageio daemon: the shared one, its failures the API's 503."""

from __future__ import annotations

from typing import ClassVar

from overt.engine.model.errors import Unavailable
from overt.imageio import daemon as _shared
from overt.imageio.daemon import DaemonFiles, render_config

__all__ = ["DaemonFiles", "ImageioDaemon", "render_config"]


class ImageioDaemon(_shared.ImageioDaemon):
    fail: ClassVar[type[Exception]] = Unavailable
