"""The GPT, its optimizers, and checkpoints on disk."""
