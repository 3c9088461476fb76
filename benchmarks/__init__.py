"""Benchmarks: ``python -m benchmarks.training`` and ``python -m benchmarks.forecasting``."""
