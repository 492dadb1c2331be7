"""An engine process hides its startup heap from the collector once it serves."""

from __future__ import annotations

import gc
import weakref

from overt.engine.composition import settle_heap


def test_the_startup_heap_is_frozen_and_its_garbage_collected_first() -> None:
    class Cycle:
        me: object

    garbage = Cycle()
    garbage.me = garbage
    gone = weakref.ref(garbage)
    alive = {"kept": [1, 2, 3]}
    del garbage
    try:
        settle_heap()
        # What startup had left for the collector is gone rather than frozen for good.
        assert gone() is None
        assert alive["kept"] == [1, 2, 3]
        # A full collection now walks only what came after: not the modules, classes
        # and functions loaded.
        assert gc.get_freeze_count() > 1000
        assert len(gc.get_objects()) < gc.get_freeze_count()
    finally:
        gc.unfreeze()
