"""The training loop (single process or torchrun) and the metric sinks it writes to."""
