import pytest

from i3d.bench import BenchConfig, bench_in_this_process
from i3d.cli.main import main
from i3d.networks.flops import gflops_per_clip


def test_figures_are_consistent_with_the_flop_count():
    config = BenchConfig(frames=9, size=224, batch_size=2, repeats=1)
    result = bench_in_this_process("fused", config)
    assert result.seconds_per_clip > 0 and result.peak_memory_mb > 0
    assert result.clips_per_second == pytest.approx(1 / result.seconds_per_clip)
    assert result.gflops_per_second == pytest.approx(gflops_per_clip(9, 224) * result.clips_per_second)


def test_cli_runs_a_path_in_a_fresh_process_and_writes_json(tmp_path, capsys):
    argv = ["bench", "--paths", "eager", "--frames", "9", "--repeats", "1", "--json", str(tmp_path / "b.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:2] == ["path", "s/clip"] and out[2].startswith("eager")
    assert (tmp_path / "b.json").read_text().count('"seconds_per_clip"') == 1


def test_unknown_path_is_a_one_line_error(capsys):
    assert main(["bench", "--paths", "tpu"]) == 2
    assert "unknown path 'tpu'" in capsys.readouterr().err
