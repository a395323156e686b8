from hypothesis import given
from hypothesis import strategies as st

from infer.batching import length_sorted_batches


@given(st.lists(st.integers(min_value=1, max_value=600), max_size=300),
       st.integers(min_value=1, max_value=4096), st.integers(min_value=1, max_value=64))
def test_every_index_once_and_budget_respected(lengths, max_tokens, max_batch):
    batches = list(length_sorted_batches(lengths, max_tokens, max_batch))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= max_batch
        if len(b) > 1:
            assert max(lengths[i] for i in b) * len(b) <= max_tokens


def test_batches_are_length_sorted():
    lengths = [5, 100, 7, 99, 6, 98]
    batches = list(length_sorted_batches(lengths, max_tokens=200, max_batch_size=8))
    assert batches[0] == [1, 3]  # the two longest fit the budget together
    assert [lengths[i] for b in batches for i in b] == sorted(lengths, reverse=True)
