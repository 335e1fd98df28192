"""One batching helper for every loop that feeds a network."""

import pytest

from i3d.batching import Batcher, batches


def test_batches_hold_consecutive_items_of_one_key_at_most_size_each():
    items = ["a1", "a2", "a3", "b1", "a4", "a5", "a6", "a7", "c1"]
    assert list(batches(items, 3, key=lambda item: item[0])) == [
        ["a1", "a2", "a3"], ["b1"], ["a4", "a5", "a6"], ["a7"], ["c1"]]
    assert list(batches([], 4, key=len)) == []
    assert list(batches(range(5), 1, key=lambda _: 0)) == [[0], [1], [2], [3], [4]]


def test_an_item_of_another_key_can_close_two_batches_at_once():
    batcher = Batcher(1, key=type)
    assert batcher.add(1) == [[1]]
    batcher = Batcher(2, key=type)
    assert batcher.add(1) == []
    assert batcher.add("x") == [[1]]
    assert batcher.add("y") == [["x", "y"]]
    assert batcher.held == [] and batcher.flush() == []


def test_dropped_items_are_never_batched():
    batcher = Batcher(4, key=lambda item: 0)
    for item in [("kept", 1), ("failed", 2), ("kept", 3)]:
        batcher.add(item)
    batcher.drop(lambda item: item[0] == "failed")
    assert batcher.flush() == [("kept", 1), ("kept", 3)]


def test_a_batch_holds_at_least_one_item():
    with pytest.raises(ValueError, match="at least one"):
        Batcher(0, key=len)
