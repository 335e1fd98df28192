"""i3d doctor: one screen (or one JSON object) on what this installation is."""

import json

from i3d.cli.main import main
from i3d.weights.registry import LABEL_SETS
from i3d.weights.store import digest_path, installed_path, save_weights


def test_doctor_reports_versions_cpu_cache_weights_kernels_and_extras(tmp_path, monkeypatch, capsys):
    import torch

    from i3d.networks.inception import InceptionI3d

    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    path = installed_path("rgb_scratch_kin600")
    save_weights(path, InceptionI3d(600, 3).state_dict(), LABEL_SETS["kinetics600"](), "rgb")
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"] == torch.__version__ and info["cache"]["folder"] == str(tmp_path)
    assert info["cpu"]["aten_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(info["cpu"]["flags"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"}
    assert [w["name"] for w in info["weights"]] == ["rgb_scratch_kin600"] and info["weights"][0]["verified"] == "ok"
    assert info["kernels"]["state"] in ("built", "not built", "build failed")
    assert info["devices"][0] == {"device": "cpu"}
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)  # damaged after it was written
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "rgb_scratch_kin600" in text and "DAMAGED" in text and f"cache: {tmp_path}" in text
    assert digest_path(path).is_file()
