"""Synthetic cohorts, simulated federations and benchmarks."""

import fedrad.common  # noqa: F401  (Flower telemetry off before flwr is imported)
