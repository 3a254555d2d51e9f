import numpy as np
import pytest

from segtrain.errors import InputError
from segtrain.segment import instances_from_probabilities


def two_touching_discs():
    yy, xx = np.mgrid[:40, :60]
    prob = np.zeros((40, 60), np.float32)
    prob[(yy - 20) ** 2 + (xx - 18) ** 2 < 100] = 0.9
    prob[(yy - 20) ** 2 + (xx - 36) ** 2 < 100] = 0.8
    prob[2:5, 50:53] = 0.7  # a small separate blob
    return prob


def test_components_and_watershed():
    prob = two_touching_discs()
    comp = instances_from_probabilities(prob, 0.5)
    assert comp.dtype == np.uint32 and comp.max() == 2  # the discs touch: one component
    ws = instances_from_probabilities(prob, 0.5, method="watershed", min_seed_distance=5)
    assert ws.max() == 3  # the watershed splits them
    assert set(np.unique(ws[20, 10:26])) == {int(ws[20, 12])}
    assert ws[20, 12] != ws[20, 42]
    no_small = instances_from_probabilities(prob, 0.5, min_size=20)
    assert no_small.max() == 1 and no_small[3, 51] == 0
    assert instances_from_probabilities(prob, 0.95).max() == 0


def test_per_class_ids_are_unique():
    prob = two_touching_discs()
    classes = np.stack([prob > 0.85, (prob > 0.75) & (prob < 0.85)]).astype(np.float32)
    out = instances_from_probabilities(classes, 0.5, channel_axis=0)
    assert out.shape == classes.shape
    a = set(np.unique(out[0])) - {0}
    b = set(np.unique(out[1])) - {0}
    assert a and b and not (a & b)


def test_bad_probabilities():
    with pytest.raises(InputError):
        instances_from_probabilities(np.full((4, 4), np.nan, np.float32))
    with pytest.raises(InputError):
        instances_from_probabilities(np.zeros((4, 4), np.float32), threshold=2)
    with pytest.raises(InputError):
        instances_from_probabilities(np.zeros((4, 4), np.float32), method="magic")
