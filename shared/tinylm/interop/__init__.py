"""Checkpoints in from the reference framework and out to transformers and llama2.c."""
