"""Decoding from a model: KV cache, windows, greedy/sampling/beam, speculation."""
