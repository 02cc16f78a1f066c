"""Traces <-> token ids: the tokenizers (imports base and lang)."""
