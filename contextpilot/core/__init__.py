"""Core engine: pure Python + numpy/scipy; no HTTP, no frameworks."""
