"""Benchmark harness behind `make bench` (BENCHMARKS.md): a tool beside the application.

Run it as `python -m benchmarks`.
"""
