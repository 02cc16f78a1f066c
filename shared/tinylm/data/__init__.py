"""Datasets: builds (TinyPy programs -> traces -> filtered token shards; text corpora), the
determinism filter, and batches for training read from the built files."""
