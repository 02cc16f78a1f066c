"""tinylm: tiny language models trained from scratch on TinyPy code tracing.

Data moves one way through the package:
spec -> programs -> traces -> tokens -> model -> generations -> scores -> report.
"""

__version__ = "0.1.0"
