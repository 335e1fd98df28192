"""How items reach a network together: gathered into batches of one shape, and made ahead by a thread.

Every loop that feeds a network (predict's clips, the timeline's windows, features' windows within a video and
across videos, FVD's clips) batches through ``Batcher``: consecutive items of one key (a clip's length, a
video's shape), at most ``size`` at a time. Batching never changes a number: a network call computes each
item on its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Batcher(Generic[Item]):
    """Items held until ``size`` of them, or an item of another key, close a batch."""

    def __init__(self, size: int, key: Callable[[Item], Hashable]) -> None:
        if size < 1:
            raise ValueError(f"a batch holds at least one item, not {size}")
        self.size, self.key = size, key
        self.held: list[Item] = []

    def add(self, item: Item) -> list[list[Item]]:
        """The batches this item closes, in order: those held before it when its key differs, and the one it
        fills."""
        closed = []
        if self.held and self.key(item) != self.key(self.held[0]):
            closed.append(self.flush())
        self.held.append(item)
        if len(self.held) == self.size:
            closed.append(self.flush())
        return closed

    def flush(self) -> list[Item]:
        """What is held, as a batch however small (the end of the items, or a caller that must not wait)."""
        batch, self.held = self.held, []
        return batch

    def drop(self, unwanted: Callable[[Item], bool]) -> None:
        self.held = [item for item in self.held if not unwanted(item)]


def batches(items: Iterable[Item], size: int, key: Callable[[Item], Hashable]) -> Iterator[list[Item]]:
    """``items`` in order, in batches of consecutive items of one key, at most ``size`` each; holds at most
    one batch."""
    batcher = Batcher(size, key)
    for item in items:
        yield from batcher.add(item)
    if batcher.held:
        yield batcher.flush()


def made_ahead(items: Iterable[Item], depth: int) -> Iterator[Item]:
    """``items`` in order, produced by a thread up to ``depth`` items ahead of the consumer: decoding (PyAV,
    OpenCV and NumPy release the GIL) overlaps a network running on a GPU. An error raised while producing is
    raised to the consumer, and a consumer that stops early stops the thread."""
    made: queue.Queue = queue.Queue(maxsize=depth)
    stop, end = threading.Event(), object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                made.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as error:  # noqa: BLE001 (handed to the consumer, raised there)
            put(error)

    threading.Thread(target=produce, name="i3d-decode-ahead", daemon=True).start()
    try:
        while (item := made.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
