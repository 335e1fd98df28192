"""What you call is what runs: the plain networks run the same code in every dtype, mode and grad mode;
faster forms are distinct objects asked for by name, say what they are, and follow ``.to()`` or refuse it
in one line."""

import pytest
import torch

import i3d
import i3d.runtimes as runtimes
from i3d.errors import I3DError
from i3d.networks.architecture import RESNET_LAYOUTS
from i3d.networks.inception import InceptionI3d
from i3d.networks.resnet3d import ResNet3d
from i3d.runtimes.fused import FusedI3d, FusedResNet, fuse
from i3d.weights.registry import DEFAULT_WEIGHTS, REGISTRY


def _randomised(network):
    torch.manual_seed(0)
    with torch.no_grad():  # BatchNorm statistics other than 0/1, so folding them matters
        for module in network.modules():
            if hasattr(module, "running_var") and module.running_var is not None:
                module.running_var.uniform_(0.5, 2.0)
                module.running_mean.uniform_(-0.2, 0.2)
                module.bias.uniform_(-0.2, 0.2)
    return network.eval()


def _inception():
    torch.manual_seed(0)
    return _randomised(InceptionI3d(10, 3, final_endpoint="Mixed_4b"))


def _resnet():
    torch.manual_seed(0)
    return _randomised(ResNet3d(RESNET_LAYOUTS["pytorchvideo-r50"], num_classes=7))


def _clip(size=64, frames=9, seed=1):
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# Largest difference against float64, relative to the largest output, each dtype's rounding allowing.
DTYPES = [(torch.float32, 1e-5), (torch.bfloat16, 0.08), (torch.float16, 0.01)]


@pytest.mark.parametrize("build", [_inception, _resnet], ids=["inception", "resnet50"])
@pytest.mark.parametrize(("dtype", "tolerance"), DTYPES, ids=["fp32", "bf16", "fp16"])
def test_the_plain_network_runs_in_every_dtype_mode_and_grad_mode(build, dtype, tolerance):
    x = _clip(64)
    reference = build().double()(x.double()).detach()
    model = build().to(dtype)
    assert type(model) in (InceptionI3d, ResNet3d)  # .to() gives the same module back
    with torch.inference_mode():
        inference = model(x.to(dtype))
    with torch.no_grad():
        no_grad = model(x.to(dtype))
    with_grad = model(x.to(dtype))
    assert inference.dtype == dtype and with_grad.requires_grad
    torch.testing.assert_close(no_grad, inference, rtol=0, atol=0)  # one code path whatever the grad mode
    torch.testing.assert_close(with_grad.detach(), inference, rtol=0, atol=0)
    error = float((inference.double() - reference).abs().max() / reference.abs().max())
    assert error < tolerance, f"{dtype}: {error:.2e} of the largest output"
    model.train()
    model(x.to(dtype)).float().square().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == dtype for p in model.parameters() if p.requires_grad)


def test_a_fused_form_is_a_distinct_object_that_says_what_it_is():
    model = _inception()
    form = runtimes.for_inference(model, "fused")
    assert isinstance(form, FusedI3d) and form is not model
    assert (form.runtime, form.precision, form.device) == ("fused", "fp32", torch.device("cpu"))
    assert repr(form) == "FusedI3d(InceptionI3d, runtime=fused, precision=fp32, device=cpu, weights=unnamed weights)"
    x = _clip()
    with torch.no_grad():
        torch.testing.assert_close(form(x), model(x), rtol=0, atol=1e-4)
        model.Mixed_4b.Branch_0.Conv3d_0a_1x1.conv3d.weight.mul_(0.25)
        assert (form(x) - model(x)).abs().max() > 1e-3  # a snapshot: convert again after changing the network
    with pytest.raises(I3DError, match="inference-only: train the plain network"):
        form.train()


@pytest.mark.parametrize("build", [_inception, _resnet], ids=["inception", "resnet50"])
def test_the_fused_form_follows_to_dtype(build):
    x = _clip(64)
    reference = build().double()(x.double()).detach()
    assert isinstance(fuse(build()), FusedI3d if build is _inception else FusedResNet)
    for dtype, name, tolerance in [(torch.float64, "fp64", 1e-6), (torch.bfloat16, "bf16", 0.08),
                                   (torch.float16, "fp16", 0.01)]:
        form = fuse(build()).to(dtype)  # folded in float32: in float64 it keeps float32's rounding of the weights
        assert form.precision == name
        with torch.inference_mode():
            out = form(x.to(dtype))
        assert out.dtype == dtype
        assert float((out.double() - reference).abs().max()) < tolerance * float(reference.abs().max())


def test_a_compute_precision_keeps_float32_in_and_out():
    model = _inception()
    form = fuse(model, "bf16")
    with torch.inference_mode():
        out = form(_clip())
    assert out.dtype == torch.float32 and form.precision == "bf16"
    assert next(model.parameters()).dtype == torch.float32  # the network itself is untouched


def test_auto_picks_openvino_on_a_cpu_where_it_is_installed_and_the_fused_form_elsewhere(monkeypatch):
    import i3d.runtimes.openvino as openvino_runtime

    monkeypatch.setattr(openvino_runtime, "openvino_available", lambda: True)
    assert runtimes.choose_runtime("auto", "fp32", "cpu") == "openvino"
    assert runtimes.choose_runtime("auto", "int8", "cpu") == "openvino"
    assert runtimes.choose_runtime("auto", "fp16", "cpu") == "fused"  # OpenVINO has no fp16 form
    monkeypatch.setattr(openvino_runtime, "openvino_available", lambda: False)
    assert runtimes.choose_runtime("auto", "fp32", "cpu") == "fused"
    with pytest.raises(I3DError, match="int8 runs through OpenVINO"):
        runtimes.choose_runtime("auto", "int8", "cpu")
    with pytest.raises(I3DError, match="must be one of auto, eager, fused, openvino, not 'torch'"):
        runtimes.choose_runtime("torch")
    with pytest.raises(I3DError, match="eager is the plain network in float32"):
        runtimes.choose_runtime("eager", "bf16")
    assert runtimes.for_inference(_inception(), "eager").__class__ is InceptionI3d


@pytest.mark.needs_weights
def test_the_default_form_refuses_what_it_cannot_run_in_one_line(pretrained):
    form = i3d.load_model()
    assert (form.runtime, form.precision, str(form.device)) == ("openvino", "fp32", "cpu")
    assert repr(form) == "OpenVinoForm(InceptionI3d, runtime=openvino, precision=fp32, device=cpu, " \
                         "weights=i3d-kinetics-400)"
    for convert in (lambda f: f.to(torch.float64), lambda f: f.half(), lambda f: f.to("meta"),
                    lambda f: f.bfloat16()):
        with pytest.raises(I3DError, match="runs on the CPU from float32 weights") as refused:
            convert(form)
        assert "\n" not in str(refused.value)
    assert form.to("cpu") is form and form.to(torch.float32) is form  # nothing to change: no-ops
    with pytest.raises(I3DError, match="computes Logits and Mixed_5c; for Mixed_4f use the plain network"):
        form.extract_endpoints(_clip(224), ["Mixed_4f"])
    with pytest.raises(I3DError, match="inference-only: train the plain network"):
        form.train()
    with pytest.raises(I3DError, match="inference-only \\(no gradients\\)"):
        form(_clip(224).requires_grad_())


@pytest.fixture(scope="module")
def real_clip(sample_video, pretrained):
    """A real 0.6 s clip by the recipe and the plain network's logits of it in float64."""
    clip = REGISTRY[DEFAULT_WEIGHTS].transforms()(sample_video, 0.0, 0.6)
    with torch.no_grad():
        return clip, i3d.create_model().double()(clip.double())


@pytest.mark.needs_weights
@pytest.mark.parametrize("runtime", ["auto", "fused", "openvino", "eager"])
def test_every_runtime_gives_the_plain_network_s_logits_on_a_real_clip(real_clip, runtime):
    clip, reference = real_clip
    form = i3d.load_model(runtime=runtime)
    with torch.inference_mode():
        logits = form(clip)
    assert logits.dtype == torch.float32
    assert float((logits.double() - reference).abs().max()) < 1e-4


def test_the_default_cpu_runtime_runs_the_resnet_layouts_at_clip_sizes_below_their_head_pool(tmp_path, monkeypatch):
    """The Caffe2 layouts average res5 over a (4, 7, 7) window cut to res5's size: at 9 frames of 193x196 res5
    has fewer frames and pixels than the window. The OpenVINO graph is one for every size, so it must compute the
    cut window too (a branch on the size made torch.export refuse the graph: `auto` failed on a CPU)."""
    from i3d.networks.architecture import RESNET_LAYOUTS
    from i3d.networks.inception import avg_pool3d
    from i3d.networks.resnet3d import ResNet3d
    from i3d.runtimes import choose_runtime, for_inference

    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    torch.manual_seed(0)
    network = ResNet3d(RESNET_LAYOUTS["caffe2-r50-32x2"], num_classes=5).eval()
    form = for_inference(network, choose_runtime("auto", "fp32", "cpu"), "fp32", torch.device("cpu"))
    clip = torch.rand(1, 3, 9, 193, 196, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        res5 = network.double().extract_endpoints(clip.double(), ["res5"])["res5"]
        cut = tuple(min(k, s) for k, s in zip((4, 7, 7), res5.shape[2:]))
        assert cut[0] < 4 and cut[1] < 7 and cut[2] < 7  # the window is cut along every axis
        reference = network.fc(avg_pool3d(res5, cut).mean(dim=(2, 3, 4)))  # the source's pooling, written out
    with torch.inference_mode():
        logits = form(clip)
    assert float((logits.double() - reference).abs().max()) < 1e-4
