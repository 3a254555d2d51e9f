"""Frozen objects (segtrain.plugin.collector: full garbage collections kept short) never keep a
removed layer's data alive: removing a layer made before the last freeze unfreezes, and one made
after it leaves the freeze in place (no long collection after every removal)."""

import gc
import weakref

import numpy as np
import pytest

from segtrain.plugin import collector
from segtrain.plugin import layers as L


class Tracked(np.ndarray):
    """An array a weak reference can watch."""


@pytest.fixture
def unfrozen_after():
    yield
    gc.unfreeze()
    gc.collect()


def test_a_layer_removed_after_a_freeze_is_freed_and_a_new_one_keeps_the_freeze(make_napari_viewer, unfrozen_after):
    viewer = make_napari_viewer()
    L.session(viewer)  # what a segtrain panel does first: the viewer's layer events are watched
    old = np.zeros((4, 64, 64), np.float32).view(Tracked)
    old_ref = weakref.ref(old)
    viewer.add_image(old, name="before the freeze")
    del old
    collector.freeze()  # as the background imports and a training Start do
    assert gc.get_freeze_count() > 0
    new = np.zeros((4, 64, 64), np.uint32).view(Tracked)
    new_ref = weakref.ref(new)
    viewer.add_labels(new, name="after the freeze")
    del new

    viewer.layers.remove("after the freeze")
    assert gc.get_freeze_count() > 0  # made after the freeze: nothing to unfreeze
    gc.collect()
    assert new_ref() is None, "a layer made after the freeze stayed in memory once removed"

    viewer.layers.remove("before the freeze")
    gc.collect()
    assert old_ref() is None, "a frozen layer's data stayed in memory once the layer was removed"
