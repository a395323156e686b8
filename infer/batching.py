"""Length-sorted, token-budgeted batches with few distinct shapes: the main lever for CPU throughput.

Padding a batch to its longest member wastes compute on short messages; sorting by length and
filling each batch up to a token budget keeps nearly every computed position a real token.
Callers get batches of *indices* and write results back by index, so input order is restored
by construction.

Every distinct (batch size, padded length) shape costs the backend a new kernel plan, and on
CPU (oneDNN, bf16 especially) those plans and their buffers stay in memory: with arbitrary
shapes, peak memory grows with the input. Lengths are therefore rounded up to a multiple
(``pad_multiple``) and the one short batch is split into power-of-two sizes, so the shapes
come from a small fixed set whatever the input.
"""

from __future__ import annotations

from typing import Iterator, Sequence


def padded_length(length: int, multiple: int) -> int:
    """``length`` rounded up to a multiple of ``multiple`` (at least one)."""
    length = max(int(length), 1)
    return -(-length // multiple) * multiple


def batch_width(longest: int, multiple: int, max_length: int) -> int:
    """The padded width of a batch whose longest member has ``longest`` tokens: rounded up to a
    multiple (fewer distinct shapes), but never past ``max_length`` (the longest window the text
    settings allow, which the model's position table is sized for) unless ``longest`` is."""
    return max(longest, min(padded_length(longest, multiple), max_length))


def power_of_two_parts(items: list[int]) -> Iterator[list[int]]:
    """Split ``items`` into runs whose sizes are distinct powers of two, largest first (13 -> 8, 4, 1)."""
    start = 0
    while start < len(items):
        size = 1 << ((len(items) - start).bit_length() - 1)
        yield items[start:start + size]
        start += size


def length_sorted_batches(
    lengths: Sequence[int], max_tokens: int, max_batch_size: int, pad_multiple: int = 1
) -> Iterator[list[int]]:
    """Yield lists of indices into ``lengths``, longest first, each batch's padded size <= budget.

    A batch holds at most ``max_batch_size`` items and at most ``max_tokens`` padded tokens
    (batch size x its longest member rounded up to ``pad_multiple``); a single item longer than
    the budget gets a batch of its own. Batches are filled to capacity, so only the last can be
    short, and it is split into power-of-two sizes. Every index appears in exactly one batch.
    """
    if max_tokens < 1 or max_batch_size < 1 or pad_multiple < 1:
        raise ValueError("max_tokens, max_batch_size and pad_multiple must be positive")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batch: list[int] = []
    capacity = 0
    for index in order:
        if not batch:
            # Sorted longest first: the first item fixes the batch's padded length.
            capacity = max(1, min(max_batch_size, max_tokens // padded_length(lengths[index], pad_multiple)))
        batch.append(index)
        if len(batch) == capacity:
            yield batch
            batch = []
    if batch:
        yield from power_of_two_parts(batch)
