"""model.ensemble: members trained side by side on their own patches, their mean probability
predicted; a run with an ensemble trains, saves, loads and exports as one model."""

from __future__ import annotations

import pytest
import torch

from segtrain.config import config_from_dict
from segtrain.models import build_model
from segtrain.models.build import Ensemble
from segtrain.models.packaged import scripted_network


def tiny3d(**model):
    return config_from_dict({"preset": "em3d_quick", "data": {"patch_shape": [8, 16, 16]},
                             "model": {"num_fmaps": 2, "fmap_inc_factor": 2, **model}})


def classes2d(**model):
    return config_from_dict({"preset": "wells2d_quick", "data": {"patch_shape": [32, 32]},
                             "model": {"task": "classes", "n_classes": 3, "encoder_depth": 3, **model}})


def _member_mean(model, x):
    """The mean over the members of each one's activated output, computed member by member."""
    heads = model.heads
    per_member = []
    for member in model.backbone.members:
        y, start, logits = member(x), 0, {}
        for head in heads:
            logits[head.name] = y[:, start:start + head.channels]
            start += head.channels
        per_member.append(model.activate(logits))
    return {h.name: torch.stack([m[h.name] for m in per_member]).mean(dim=0) for h in heads}


@pytest.mark.parametrize("make, shape", [(tiny3d, (1, 1, 8, 16, 24)), (classes2d, (1, 1, 40, 32))])
def test_an_ensemble_predicts_its_members_mean_probability(make, shape):
    torch.manual_seed(0)
    model = build_model(make(ensemble=3)).eval()
    assert isinstance(model.backbone, Ensemble) and len(model.backbone.members) == 3
    x = torch.rand(*shape)
    with torch.no_grad():
        got = model.activate(model(x))
        want = _member_mean(model, x)
        first = _member_mean(_only_member(model, 0), x)
    for name in want:
        assert got[name].shape == want[name].shape
        assert torch.allclose(got[name], want[name], atol=1e-5), name
        assert not torch.allclose(got[name], first[name], atol=1e-3)  # members differ: the mean is not one of them
    if make is classes2d:  # softmax: the mean of distributions is a distribution
        assert torch.allclose(got["probabilities"].sum(dim=1), torch.ones(1), atol=1e-5)


def _only_member(model, i):
    """The same model with member ``i`` alone (repeated), to compare the mean with one member."""
    import copy

    one = copy.deepcopy(model)
    one.backbone.members = torch.nn.ModuleList([one.backbone.members[i]])
    return one


def test_in_training_each_member_sees_its_own_patches():
    torch.manual_seed(0)
    model = build_model(tiny3d(ensemble=2)).train()
    x = torch.rand(4, 1, 8, 16, 16)
    out = torch.cat(list(model(x).values()), dim=1)
    first, second = model.backbone.members
    with torch.no_grad():
        assert torch.allclose(out[:2], first(x[:2]), atol=1e-6)
        assert torch.allclose(out[2:], second(x[2:]), atol=1e-6)
    # the loss of one member's patches moves only that member
    out[:2].sum().backward()
    assert sum(float(p.grad.abs().sum()) for p in first.parameters() if p.grad is not None) > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in second.parameters())
    with pytest.raises(ValueError, match="multiple of 2"):
        model(torch.rand(3, 1, 8, 16, 16))


def test_single_model_checkpoints_keep_their_keys():
    """ensemble 1 builds exactly the network runs were saved with before ensembles existed."""
    keys = list(build_model(tiny3d()).state_dict())
    assert keys[0].startswith("backbone.down.") and keys[-1] == "head_layer.bias"


def test_an_ensembles_torchscript_gives_the_mean_probability():
    torch.manual_seed(0)
    model = build_model(tiny3d(ensemble=2)).eval()
    scripted = scripted_network(model, torch.rand(1, 1, 8, 16, 16))
    x = torch.rand(1, 1, 9, 17, 21)
    with torch.no_grad():
        want = model.activate(model(x))
        got = scripted(x)
    assert torch.allclose(got[0], want["affinities"], atol=1e-5)
    assert torch.allclose(got[1], want["lsds"], atol=1e-5)
