"""Benchmarks: the quality benchmark (``quality``: systems x datasets, one table), its baseline
systems (``baselines``) and the scoring-speed benchmark (``throughput``)."""
