"""Every example in the README and docs/ runs: each page's shell and Python blocks run in order in one
folder (where the README's first block puts the sample videos), and a ```text output block shows lines
the block before it prints. A block marked ``no-run: REASON`` in its info string (it installs packages,
needs a GPU, the network or data of your own) is skipped with that reason."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\S*)([^\n]*)\n(.*?)^```$", re.M | re.S)
NUMBER = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")


def same_line(expected: str, printed: str) -> bool:
    """The same words, and numbers within 1e-4 (the project's promise; CPUs and runtimes differ in the last
    digits printed)."""
    if NUMBER.sub("#", expected) != NUMBER.sub("#", printed):
        return False
    return all(abs(float(a) - float(b)) <= 1e-4 for a, b in zip(NUMBER.findall(expected), NUMBER.findall(printed)))


def blocks(page: Path) -> list[tuple[str, str, str]]:
    """(language, info after it, code) of each fenced block, in order."""
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer(page.read_text())]


def steps(page: Path) -> list[tuple[str, str, str | None]]:
    """(language, code, expected output) of each block to run."""
    found, runnable = [], ("bash", "python")
    for language, info, code in blocks(page):
        if language == "text" and info == "output":
            assert found, f"{page.name}: an output block follows no example"
            found[-1] = (*found[-1][:2], code)
        elif language in runnable and not info.startswith("no-run:"):
            found.append((language, code, None))
    return found


def test_every_block_is_run_or_says_why_not():
    for page in PAGES:
        for language, info, _ in blocks(page):
            assert language, f"{page.name}: a block without a language (```text for output and transcripts)"
            if language in ("bash", "python") and info:
                assert info.startswith("no-run: ") and len(info) > len("no-run: ") + 5, (page.name, info)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if steps(p)], ids=lambda p: p.name)
def test_the_examples_of_the_page_run(page, tmp_path, pretrained, sample_video):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if page.name != "README.md":  # the pages start where the README's first example leaves the reader
        subprocess.run(["i3d", "samples", "fetch", "--to", "videos"], cwd=tmp_path, env=env, check=True,
                       capture_output=True)
    for language, code, expected in steps(page):
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{page.name}:\n{code}\n{done.stderr[-2000:]}"
        if expected is not None:
            printed = done.stdout.splitlines()
            missing = [line for line in expected.splitlines()
                       if line.strip() and not any(same_line(line, seen) for seen in printed)]
            assert not missing, f"{page.name}: the block printed {printed}, not {missing}"


def test_every_command_s_help_names_its_page_which_exists(capsys):
    from i3d.cli.main import COMMANDS, PAGES, main

    assert set(PAGES) == set(COMMANDS)
    for command in COMMANDS:
        assert main([command, "--help"]) == 0
        page = capsys.readouterr().out.strip().splitlines()[-1]
        assert page == f"Documentation: docs/{PAGES[command]}" and (ROOT / "docs" / PAGES[command]).is_file()
