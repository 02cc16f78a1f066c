"""Scoring checkpoints on test suites, and looking inside one: explain pages and probes."""
