"""The TinyPy language: parser, generator presets, tracer and determinism filter."""
