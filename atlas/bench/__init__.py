"""Benchmarks of the sampling engine: ``quality`` (fidelity on the toy world) and ``throughput`` (speed)."""
