"""Length-sorted, token-budgeted batches: the main lever for CPU throughput.

Padding a batch to its longest member wastes compute on short messages; sorting by length and
filling each batch up to a token budget keeps nearly every computed position a real token.
Callers get batches of *indices* and write results back by index, so input order is restored
by construction.
"""

from __future__ import annotations

from typing import Iterator, Sequence


def length_sorted_batches(
    lengths: Sequence[int], max_tokens: int, max_batch_size: int
) -> Iterator[list[int]]:
    """Yield lists of indices into ``lengths``, longest first, each batch padded size <= budget.

    A batch holds at most ``max_batch_size`` items and at most ``max_tokens`` padded tokens
    (batch size x longest member); a single item longer than the budget gets a batch of its own.
    Every index appears in exactly one batch.
    """
    if max_tokens < 1 or max_batch_size < 1:
        raise ValueError("max_tokens and max_batch_size must be positive")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batch: list[int] = []
    longest = 0
    for index in order:
        length = max(int(lengths[index]), 1)
        new_longest = max(longest, length)
        if batch and (len(batch) >= max_batch_size or new_longest * (len(batch) + 1) > max_tokens):
            yield batch
            batch, new_longest = [], length
        batch.append(index)
        longest = new_longest
    if batch:
        yield batch
