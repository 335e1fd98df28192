"""One settings path: options are made from the settings dataclasses, a default is written once (in the
field), the library names a field and the command line its flag, and one option means one thing."""

import argparse
import dataclasses

import pytest

from i3d.cli.main import build_parser, main
from i3d.errors import SettingError
from i3d.settings import ExtractionConfig, FvdProtocol, ServeConfig, WindowSpec, option_name


def _command(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize(("command", "settings"), [("features", ExtractionConfig), ("features", WindowSpec),
                                                   ("fvd", FvdProtocol), ("serve", ServeConfig)])
def test_every_documented_field_is_an_option_with_its_help_and_default(command, settings):
    options = _options(_command(command))
    for field in dataclasses.fields(settings):
        if not field.metadata.get("help"):
            continue
        action = options[option_name(field)]
        assert action.help.startswith(field.metadata["help"]) and action.dest == field.name
        default = field.metadata.get("default_text", field.default)
        if default not in (None, "", dataclasses.MISSING):
            assert action.help.endswith(f"(default: {default})")


def test_the_library_names_the_field_and_the_command_line_the_flag(tmp_path, capsys):
    with pytest.raises(SettingError, match="^batch_size must be at least 1, not 0$"):
        ExtractionConfig(batch_size=0)
    with pytest.raises(SettingError, match="^max_videos must be at least 2"):
        FvdProtocol("p", 16, max_videos=1)
    assert main(["features", str(tmp_path / "v.mp4"), "-o", str(tmp_path / "out"), "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "i3d: error: --batch-size must be at least 1, not 0\n"
    assert main(["fvd", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--videos", "1"]) == 2
    assert capsys.readouterr().err.startswith("i3d: error: --videos must be at least 2")
    assert main(["serve", "--queue", "0"]) == 2
    assert capsys.readouterr().err == "i3d: error: --queue must be at least 1, not 0\n"


def test_native_frame_rate_is_a_word_for_none(tmp_path):
    from i3d.cli.options import given_settings

    args = _command("features").parse_args(["v.mp4", "--fps", "native", "--per-frame", "21"])
    assert given_settings(args, ExtractionConfig) == {"fps": None, "per_frame": 21}


def test_one_option_name_means_one_thing():
    """--clips is clips per video (evaluate); FVD's videos per set is --videos."""
    assert "--clips" not in _options(_command("fvd")) and "--videos" in _options(_command("fvd"))
    assert "clips per video" in _options(_command("evaluate"))["--clips"].help


def test_decode_workers_follow_the_network_s_device(monkeypatch):
    """One decoder beside a CPU network (it keeps up, and the network takes every core); beside a GPU every
    core but the one feeding it, up to 8, unless flow is computed there; a number given is kept."""
    import os

    from i3d.settings import ExtractionConfig

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert ExtractionConfig().decode_workers("cpu") == 1
    assert ExtractionConfig().decode_workers("cuda:1") == 8
    assert ExtractionConfig(workers=3).decode_workers("cuda") == 3
    assert ExtractionConfig(workers=0).decode_workers("cpu") == 0
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert ExtractionConfig().decode_workers("cuda") == 3
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert ExtractionConfig().decode_workers("cuda") == 1
    # flow computed on a GPU stays in the network's process: one CUDA context, one compilation
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    for stream in ("flow", "joint"):
        assert ExtractionConfig(stream=stream).decode_workers("cuda") == 0
        assert ExtractionConfig(stream=stream).decode_workers("cpu") == 1
    assert ExtractionConfig(stream="joint", flow_dir="flows").decode_workers("cuda") == 8  # flow read, not computed
