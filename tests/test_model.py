import math

import pytest
import torch

from i3d.networks.flops import gflops_per_clip
from i3d.networks.inception import ENDPOINTS, MIN_FRAMES, InceptionI3d, max_pool_same, pad_same, same_padding
from i3d.runtimes.fused import fast_max_pool, fuse


def tf_same(size: int, kernel: int, stride: int) -> tuple[int, int]:
    # TensorFlow's documented rule: out = ceil(in / stride); pad = max((out - 1) * stride + k - in, 0), extra after.
    out = -(-size // stride)
    pad = max((out - 1) * stride + kernel - size, 0)
    return pad // 2, pad - pad // 2


@pytest.mark.parametrize("size", range(1, 40))
@pytest.mark.parametrize(("kernel", "stride"), [(1, 1), (2, 2), (3, 1), (3, 2), (7, 2)])
def test_same_padding_matches_the_tensorflow_formula(size, kernel, stride):
    assert same_padding(size, kernel, stride) == tf_same(size, kernel, stride)


def test_same_padding_known_i3d_cases():
    assert same_padding(224, 7, 2) == (2, 3)  # Conv3d_1a spatially: asymmetric, odd pixel after
    assert same_padding(79, 7, 2) == (3, 3)
    assert same_padding(112, 3, 2) == (0, 1)  # MaxPool3d_2a


def test_max_pool_padding_never_wins():
    x = torch.full((1, 2, 5, 7, 7), -5.0)
    assert torch.all(max_pool_same(x, (3, 3, 3), (2, 2, 2)) == -5.0)


def random_model(num_classes=400, in_channels=3, seed=0) -> InceptionI3d:
    """Random weights with non-trivial BatchNorm statistics, so folding them is really exercised."""
    torch.manual_seed(seed)
    model = InceptionI3d(num_classes, in_channels)
    for module in model.modules():
        if hasattr(module, "running_var"):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def expected_shapes(batch, frames, size, num_classes=400):
    """Per endpoint (B, C, T, H, W) from the architecture: each stride-2 stage takes ceil(n / 2)."""
    def half(n):
        return math.ceil(n / 2)
    t1, s1 = half(frames), half(size)
    s2, s3 = half(s1), half(half(s1))
    t4, s4 = half(t1), half(s3)
    t5, s5 = half(t4), half(s4)
    channels = {"Conv3d_1a_7x7": 64, "MaxPool3d_2a_3x3": 64, "Conv3d_2b_1x1": 64, "Conv3d_2c_3x3": 192,
                "MaxPool3d_3a_3x3": 192, "Mixed_3b": 256, "Mixed_3c": 480, "MaxPool3d_4a_3x3": 480,
                "Mixed_4b": 512, "Mixed_4c": 512, "Mixed_4d": 512, "Mixed_4e": 528, "Mixed_4f": 832,
                "MaxPool3d_5a_2x2": 832, "Mixed_5b": 832, "Mixed_5c": 1024}
    where = {"Conv3d_1a_7x7": (t1, s1), "MaxPool3d_2a_3x3": (t1, s2), "Conv3d_2b_1x1": (t1, s2),
             "Conv3d_2c_3x3": (t1, s2), "MaxPool3d_3a_3x3": (t1, s3), "Mixed_3b": (t1, s3), "Mixed_3c": (t1, s3),
             "MaxPool3d_4a_3x3": (t4, s4), "Mixed_4b": (t4, s4), "Mixed_4c": (t4, s4), "Mixed_4d": (t4, s4),
             "Mixed_4e": (t4, s4), "Mixed_4f": (t4, s4), "MaxPool3d_5a_2x2": (t5, s5), "Mixed_5b": (t5, s5),
             "Mixed_5c": (t5, s5)}
    shapes = {name: (batch, channels[name], t, s, s) for name, (t, s) in where.items()}
    shapes["Logits"] = shapes["Predictions"] = (batch, num_classes)
    return shapes


@pytest.mark.parametrize(("batch", "frames", "size"), [(2, 9, 224), (1, 17, 225)])
def test_every_endpoint_has_the_reference_shape(batch, frames, size):
    model = random_model()
    with torch.inference_mode():
        outputs = model.extract_endpoints(torch.zeros(batch, 3, frames, size, size), model.endpoints)
    expected = expected_shapes(batch, frames, size)
    del expected["Predictions"]  # built only with final_endpoint="Predictions"
    assert {k: tuple(v.shape) for k, v in outputs.items()} == expected


def test_predictions_endpoint_is_a_softmax():
    model = InceptionI3d(final_endpoint="Predictions").eval()
    assert model.endpoints == ENDPOINTS
    with torch.inference_mode():
        probabilities = model(torch.rand(1, 3, MIN_FRAMES, 224, 224))
    assert probabilities.shape == (1, 400)
    torch.testing.assert_close(probabilities.sum(), torch.tensor(1.0))


def test_final_endpoint_builds_only_that_far():
    model = InceptionI3d(final_endpoint="Mixed_4b")
    assert not hasattr(model, "Mixed_4c") and not hasattr(model, "Logits")
    assert model(torch.zeros(1, 3, 8, 64, 64)).shape == (1, 512, 2, 4, 4)
    with pytest.raises(ValueError):
        InceptionI3d(final_endpoint="Mixed_9z")


def test_flow_input_and_replaced_logits():
    model = random_model(num_classes=10, in_channels=2)
    model.replace_logits(7)
    with torch.inference_mode():
        assert model(torch.zeros(1, 2, MIN_FRAMES, 224, 224)).shape == (1, 7)


def test_too_few_frames_is_refused_by_the_pool():
    with pytest.raises(ValueError, match="smaller than the 2x7x7 pool"), torch.inference_mode():
        random_model()(torch.zeros(1, 3, MIN_FRAMES - 1, 224, 224))


def test_logits_are_the_linear_head_of_the_feature():
    model = random_model()
    x = torch.rand(1, 3, 10, 224, 224) * 2 - 1
    with torch.inference_mode():
        features = model.forward_features(x)
        conv = model.Logits.Conv3d_0c_1x1.conv3d
        assert features.shape == (1, 1024)
        torch.testing.assert_close(model(x), features @ conv.weight.flatten(1).T + conv.bias, rtol=0, atol=1e-5)
        torch.testing.assert_close(model.forward_head(features), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(("frames", "size"), [(9, 224), (11, 231)])
def test_fast_inference_form_computes_the_same_function(frames, size):
    model = random_model()
    fast = fuse(model)
    x = torch.rand(2, 3, frames, size, size) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), rtol=0, atol=1e-4)
        ref = model.extract_endpoints(x, ["Mixed_4f", "Mixed_5c"])
        got = fast.extract_endpoints(x, ["Mixed_4f", "Mixed_5c"])
        for name in ref:
            torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel", [(1, 3, 3), (3, 3, 3), (2, 2, 2), (3, 1, 2)])
@pytest.mark.parametrize("stride", [(1, 2, 2), (2, 2, 2), (1, 1, 1)])
@pytest.mark.parametrize("shape", [(1, 4, 7, 12, 9), (2, 3, 8, 13, 14)])
def test_fast_max_pool_equals_padded_max_pool(kernel, stride, shape):
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(fast_max_pool(x, kernel, stride), max_pool_same(x, kernel, stride), rtol=0, atol=0)


def test_flop_count_matches_the_published_figure():
    assert gflops_per_clip(79, 224) == pytest.approx(279, rel=0.01)  # OpenVINO model card: 278.981 GFLOPs


def test_max_pool_same_repeating_the_edge_equals_tf_s_minus_infinity_padding():
    """SAME pads less than a kernel, so the edge a pad repeats is in every window the pad is: the same maxima."""
    generator = torch.Generator().manual_seed(0)
    for frames in range(1, 12):
        for kernel, stride in [((3, 3, 3), (1, 1, 1)), ((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (2, 2, 2)),
                               ((2, 2, 2), (2, 2, 2)), ((1, 2, 2), (1, 3, 3))]:
            x = torch.randn(2, 3, frames, frames + 1, frames + 2, generator=generator) - 5
            tf_same = torch.nn.functional.max_pool3d(pad_same(x, kernel, stride, value=-math.inf), kernel, stride)
            assert torch.equal(max_pool_same(x, kernel, stride), tf_same), (frames, kernel, stride)
