"""One model, fast when used for inference: eval mode with autograd off runs the fused form, anything else
the plain one, and a changed weight never leaves a stale fused copy in use."""

import pytest
import torch

import i3d
from i3d.factory import create_model
from i3d.inference import use_fused_inference
from i3d.model import InceptionI3d
from i3d.weights.registry import DEFAULT_WEIGHTS, REGISTRY


def _clip(frames=9, seed=0):
    return torch.rand(1, 3, frames, 224, 224, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def model():
    torch.manual_seed(0)
    network = InceptionI3d(10, 3).eval()
    with torch.no_grad():  # BatchNorm statistics other than 0/1, so folding them matters
        for module in network.modules():
            if hasattr(module, "running_var"):
                module.running_var.uniform_(0.5, 2.0)
                module.running_mean.uniform_(-0.2, 0.2)
                module.bias.uniform_(-0.2, 0.2)
    return use_fused_inference(network)


def _plain(network, x):
    network.fast_inference = False
    try:
        with torch.inference_mode():
            return network(x)
    finally:
        network.fast_inference = True


def test_eval_without_autograd_runs_the_fused_form_with_the_same_outputs(model):
    x = _clip()
    with torch.inference_mode():
        fast = model(x)
        assert model.fast() is not None
        features = model.forward_features(x)
    torch.testing.assert_close(fast, _plain(model, x), atol=1e-4, rtol=0)
    model.fast_inference = False
    with torch.inference_mode():
        torch.testing.assert_close(features, model.forward_features(x), atol=1e-4, rtol=0)


def test_training_and_gradients_use_the_plain_network(model):
    x = _clip()
    assert model(x).requires_grad and model.fast() is None  # eval, but autograd on
    model.train()
    loss = model(x).sum()
    loss.backward()
    assert model.Conv3d_1a_7x7.conv3d.weight.grad is not None
    with torch.no_grad():
        assert model.fast() is None  # training mode


def test_a_weight_written_in_place_is_never_served_stale(model):
    x = _clip(seed=1)
    with torch.inference_mode():
        before = model(x)
    with torch.no_grad():
        model.Mixed_4b.Branch_0.Conv3d_0a_1x1.conv3d.weight.mul_(0.25)
        model.Mixed_5c.Branch_1.Conv3d_0a_1x1.batch_norm.running_mean.add_(0.3)
    with torch.inference_mode():
        after = model(x)
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, _plain(model, x), atol=1e-4, rtol=0)


def test_load_state_dict_and_replaced_layers_are_followed(model):
    x = _clip(seed=2)
    with torch.inference_mode():
        model(x)
    torch.manual_seed(5)
    other = InceptionI3d(10, 3).eval()
    model.load_state_dict(other.state_dict())
    assert not other.fast_inference  # a bare network runs its plain form
    with torch.inference_mode():
        torch.testing.assert_close(model(x), other(x), atol=1e-4, rtol=0)
    model.replace_logits(4)
    model.eval()
    with torch.inference_mode():
        assert model(x).shape == (1, 4)
        torch.testing.assert_close(model(x), _plain(model, x), atol=1e-4, rtol=0)
        model.replace_logits(3)  # a layer made under inference mode: no version counter, so the plain form
        assert model.fast() is None and model(x).shape == (1, 3)
    assert set(model.state_dict()) == set(InceptionI3d(3, 3).state_dict())  # the fused copy is not a submodule


@pytest.mark.needs_weights
def test_the_default_model_is_fast_and_exact_on_a_real_clip(sample_video, pretrained):
    model = i3d.load_model()
    assert isinstance(model, InceptionI3d) and model.fast_inference
    clip = REGISTRY[DEFAULT_WEIGHTS].transforms()(sample_video, 0.0, 1.6)
    with torch.inference_mode():
        fast = model(clip)
    torch.testing.assert_close(fast, _plain(model, clip), atol=1e-4, rtol=0)
    assert create_model().fast_inference
