"""Throughput and time-to-target measurements (``make benchmarks``; not timed tests)."""
