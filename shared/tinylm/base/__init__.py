"""The base layer every other imports: errors, files, typed YAML config, devices and DDP,
argument parsing, and the statistics of reported numbers."""
