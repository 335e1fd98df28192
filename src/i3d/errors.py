"""The exception types for mistakes a user can make; the CLI prints their message as a single line."""


class I3DError(Exception):
    """Bad input, missing weights, a failed download: anything the user can fix."""


class OutputError(I3DError, OSError):
    """An output that could not be written (nothing was left in its place). An OSError too, so that a
    command over many items records it against the item and goes on, as for any failed write."""

    def __init__(self, path: object, reason: str, code: int | None = None) -> None:
        OSError.__init__(self, code, reason, str(path))
        self.message = f"{path}: could not be written ({reason}); nothing was left there"

    def __str__(self) -> str:
        return self.message


class I3DNotice(UserWarning):
    """Something a user should know that changes no result (a slower path taken, a renamed option). The
    library warns; the CLI prints each as one ``i3d: note:`` line."""


class SettingError(I3DError):
    """A setting out of range, said by its field name (``batch_size must be at least 1``); the CLI says it by
    its flag (``--batch-size must be at least 1``), from the same dataclass field."""

    def __init__(self, field: str, problem: str, flag: str | None = None) -> None:
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem
        self.flag = flag or "--" + field.replace("_", "-")

    def command_line(self) -> str:
        return f"{self.flag} {self.problem}"


def no_such_input(path: object) -> I3DError:
    """An input that is not there, saying so plainly when it is a link that leads nowhere or in a loop."""
    import errno
    import os

    if not os.path.islink(path):
        return I3DError(f"{path}: no such file or folder")
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return I3DError(f"{path}: a link in a loop (it leads back to itself)")
    return I3DError(f"{path}: a link to {os.readlink(path)}, which is not there")


def one_line(text: object) -> str:
    """``text`` as one printable line: newlines, tabs, carriage returns and other control characters become
    escapes (``\\n``), and bytes a file name could not decode stay as their ``\\udcXX`` escapes. The one rule
    for every message and row a command prints, whatever names it quotes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in str(text))
