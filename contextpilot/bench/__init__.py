"""Benchmarks: workloads, runner and report (``python -m contextpilot.bench``)."""
