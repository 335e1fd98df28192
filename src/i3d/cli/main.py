"""``i3d``: one small module per command. Parsing imports no torch, so ``--help`` and argument errors are
instant; every mistake a user can make ends as one ``i3d: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import warnings

from i3d.cli import interrupt
from i3d.errors import I3DError, SettingError, one_line

COMMANDS = ("predict", "features", "fvd", "flow", "evaluate", "train", "export", "visualize", "serve", "weights",
            "samples", "bench", "setup", "doctor")
# The page of docs/ each command's help names.
PAGES = {"predict": "predict.md", "features": "features.md", "fvd": "fvd.md", "flow": "flow.md",
         "evaluate": "evaluation.md", "train": "training.md", "export": "export.md", "visualize": "flow.md",
         "serve": "serving.md", "weights": "weights.md", "samples": "development.md", "bench": "performance.md",
         "setup": "development.md", "doctor": "development.md"}


class Parser(argparse.ArgumentParser):
    """Argument errors as one line, like every other error."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(innermost_parser=self)  # a subcommand's default overrides its parent's

    def error(self, message: str) -> None:
        command = self.prog.removeprefix("i3d").strip()  # "" for i3d itself, "weights fetch" for a subcommand
        sys.stderr.write(f"i3d: error: {command + ': ' if command else ''}{message} (see `{self.prog} --help`)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="i3d", description="I3D video action recognition.",
                    epilog="Documentation: README.md, and a page per command in docs/ (each command's --help names "
                    "its page).", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline", action="store_true",
                        help="never fetch weights or samples on first use (as I3D_OFFLINE=1): what is not installed "
                        "is an error that says how to install it")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser,
                                     help="one of:")
    for name in COMMANDS:
        importlib.import_module(f"i3d.cli.{name}").add_parser(commands)
    for name, command in commands.choices.items():
        command.epilog = f"Documentation: docs/{PAGES[name]}"
    return parser


def _note(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"i3d: note: {one_line(message)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    interrupt.reset()
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # said by the command's parser, which knows its own --help
            args.innermost_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as done:  # --help (0) or an argument error (2), already printed
        return int(done.code or 0)
    if args.offline:
        os.environ["I3D_OFFLINE"] = "1"
    warnings.showwarning = _note  # notes as one line each, not a source listing
    try:
        code = args.run(args)  # commands over many items return 1 when some of them failed
    except SettingError as error:  # the library names the field; the command line names the flag
        print(f"i3d: error: {one_line(error.command_line())}", file=sys.stderr)
        return 2
    except I3DError as error:
        print(f"i3d: error: {one_line(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader left: entry_point ends quietly
        raise
    except OSError as error:  # the system refused something no check foresaw: still one line
        print(f"i3d: error: {one_line(_os_error_line(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        interrupt.say_interrupted()
        return 130
    return code or 0


def _os_error_line(error: OSError) -> str:
    from i3d.files import cache_hint

    if not error.filename:
        return str(error.strerror or error)
    return f"{error.filename}: {error.strerror or error}{cache_hint(error.filename)}"


def entry_point() -> None:
    """The console script. Ctrl-C at any moment, even while modules are still importing or inside a long
    native call, ends with one line and the process ends by SIGINT (see interrupt.py)."""
    try:
        if sys.argv[1:2] != ["serve"]:  # uvicorn handles the signals of a server itself
            interrupt.install_watchdog()
        code = main()
    except KeyboardInterrupt:
        interrupt.say_interrupted()
        code = 130
    except BrokenPipeError:  # the reader (`| head`) left: nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except Exception:
        if not interrupt.received():  # a fault of ours: its traceback is the report
            raise
        interrupt.say_interrupted()  # an interrupt a native library turned into an error of its own
        code = 130
    if code == 130:
        interrupt.die_of_sigint()
    gc.freeze()  # the final collections would walk every object torch made: 0.3 s of a short command
    sys.exit(code)


if __name__ == "__main__":
    entry_point()
