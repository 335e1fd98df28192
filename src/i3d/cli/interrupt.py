"""Ctrl-C: one line, nothing half-written left, and the process ends by SIGINT within a couple of seconds.

Python raises KeyboardInterrupt between bytecodes, so inside one long native call (a forward pass over
a 250-frame clip takes seconds on a CPU) the interrupt waits for the call. A watchdog thread, woken by
the signal itself, gives the main thread a moment to unwind; if it is still inside native code, the
watchdog does what unwinding would have done: removes the temporary files of writes in progress, stops
worker processes, prints the line and ends the process by SIGINT. Ending by the signal (not exit code
130) is what a shell needs: `$?` shows 130 and a loop over videos stops there.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time

GRACE_S = 1.0  # the main thread's time to unwind by itself before the watchdog acts
_SAID = threading.Lock()
_said = False
_received = False


def say_interrupted() -> None:
    """The one line, once, whoever says it first; on a line of its own, after a progress bar left open."""
    global _said
    with _SAID:
        if not _said:
            _said = True
            tqdm = sys.modules.get("tqdm")
            bar_open = tqdm is not None and bool(getattr(tqdm.tqdm, "_instances", None))
            print(("\n" if bar_open else "") + "i3d: interrupted", file=sys.stderr, flush=True)


def received() -> bool:
    """Whether Ctrl-C came: a native library may turn the KeyboardInterrupt it was raised into into an error of
    its own (safetensors' loader under torch 2.11 gives a ValueError), which is then the interrupt all the same."""
    return _received


def reset() -> None:
    global _said, _received
    _received = False
    with _SAID:
        _said = False


def install_watchdog() -> None:
    """From the main thread, before the command runs (not under uvicorn, which handles its own signals)."""
    signal.signal(signal.SIGINT, _on_sigint)
    read_end, write_end = socket.socketpair()
    write_end.setblocking(False)
    signal.set_wakeup_fd(write_end.fileno(), warn_on_full_buffer=False)
    if hasattr(os, "register_at_fork"):  # a forked worker's own Ctrl-C must not wake this process's watchdog
        os.register_at_fork(after_in_child=_forget_wakeup_fd)
    threading.Thread(target=_watch, args=(read_end, write_end), name="i3d-interrupt", daemon=True).start()


DEFER_S = 0.02  # how soon an interrupt that arrived during an import is delivered again


def _on_sigint(signum: int, frame) -> None:
    """KeyboardInterrupt, but never inside an import: raised in an extension's import-time callbacks
    (torch's pybind11 registrations) it escapes as a C++ exception and aborts the process (SIGABRT, seen
    once in 30 runs on a loaded machine). There the signal is delivered again a moment later, until it
    lands outside the import; the watchdog, already woken, still ends the process within its grace."""
    global _received
    _received = True
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            timer = threading.Timer(DEFER_S, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
            return
        frame = frame.f_back
    raise KeyboardInterrupt


def _forget_wakeup_fd() -> None:
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


def _watch(read_end: socket.socket, write_end: socket.socket) -> None:
    while True:
        woken = read_end.recv(64)  # one byte per signal that has a Python handler
        if not woken:
            return
        if signal.SIGINT in woken:
            break
    time.sleep(GRACE_S)
    _remove_temporaries()
    _stop_workers()
    say_interrupted()
    die_of_sigint(run_exit_functions=False)  # the main thread is inside a native call: they could wait on it


def _remove_temporaries() -> None:
    from i3d.files import PENDING_TEMPORARIES

    for path in list(PENDING_TEMPORARIES):
        with contextlib.suppress(OSError):
            path.unlink()


def _stop_workers() -> None:
    """Terminate worker processes and release their queues' semaphores (else multiprocessing's resource
    tracker reports them leaked, on stderr, after the process ends)."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None:
        return
    for child in multiprocessing.active_children():
        with contextlib.suppress(Exception):
            child.terminate()
    with contextlib.suppress(Exception):
        from multiprocessing import util

        util._run_finalizers(0)  # those the interpreter's exit runs first: semaphores, not thread joins


def die_of_sigint(run_exit_functions: bool = True) -> None:
    """What the interpreter's exit would clean up first (multiprocessing's queues and workers, temporary
    folders), then the signal, as CPython orders it for an unhandled Ctrl-C."""
    if run_exit_functions:
        import atexit

        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to deliver
            stream.flush()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    else:  # Python sets handlers from the main thread only; the C library does it from any
        try:
            import ctypes

            ctypes.CDLL(None).signal(signal.SIGINT, 0)  # 0: SIG_DFL
        except (OSError, AttributeError):  # no C library to ask (Windows): the exit status says it
            os._exit(130)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # the signal is delivered at once; this only keeps the thread from returning first
    os._exit(130)
