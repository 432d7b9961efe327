"""Benchmarks of genarm-serve: load generator, research baseline, comparisons.

Run as modules from the repository root, e.g. ``python -m benchmarks.load --help``.
"""
