"""FVD and KVD as the VideoGPT family computes them (VideoGPT and TATS; cd-fvd's I3D mode with StyleGAN-V's
distance), against numbers their own code gave on the same videos (tests/references/ wrote tests/data/)."""

import json
from pathlib import Path

import numpy as np
import pytest

from i3d.errors import I3DError
from i3d.fvd import VideoEmbedder, fvd, get_protocol
from i3d.fvd.distance import kernel_distance_full
from references.video_sets import video_sets

REFERENCE = json.loads((Path(__file__).parent / "data" / "videogpt_fvd.json").read_text())
CD_FVD = json.loads((Path(__file__).parent / "data" / "cd_fvd.json").read_text())


@pytest.fixture(scope="module")
def sets():
    return video_sets()


@pytest.fixture(scope="module")
def embedder(pretrained):
    protocol = get_protocol("videogpt")
    return VideoEmbedder(resize=protocol.resize, batch_norm_eps=protocol.batch_norm_eps, device="cpu")


def test_the_protocol_is_the_family_s_steps():
    protocol = get_protocol("videogpt")
    assert (protocol.resize, protocol.batch_norm_eps, protocol.covariance, protocol.sqrtm, protocol.kvd) == (
        "half-pixel", 1e-5, "n-1", "tfgan", "full")
    assert protocol.frames is None and protocol.short_real == "error"  # whole videos, every one as long
    assert "tats/fvd/pytorch_i3d.py:81" in protocol.source


@pytest.mark.slow
def test_embeddings_fvd_and_kvd_are_the_family_s_own(sets, embedder):
    real, fake = sets
    real_logits, fake_logits = embedder.embed(real), embedder.embed(fake)
    np.testing.assert_allclose(real_logits.mean(axis=0), REFERENCE["real_logits_mean"], atol=1e-4)
    value = fvd(real, fake, embedder, protocol="videogpt")
    assert value == pytest.approx(REFERENCE["fvd_float64"], rel=1e-4)
    assert kernel_distance_full(real_logits, fake_logits) == pytest.approx(REFERENCE["kvd"], rel=1e-4)
    assert fvd(real, fake, embedder, protocol="cd-fvd") == pytest.approx(CD_FVD["fvd"], rel=1e-4)


@pytest.mark.slow
def test_an_embedder_of_another_protocol_is_refused(sets, pretrained):
    real, fake = sets
    with pytest.raises(I3DError, match="BatchNorm epsilon is 0.001, videogpt's 1e-05"):
        fvd(real[:2], fake[:2], VideoEmbedder(resize="half-pixel", device="cpu", runtime="fused"), protocol="videogpt")
