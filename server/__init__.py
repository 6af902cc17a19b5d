"""The aggregator: Flower ServerApp and the study protocol."""

import fedrad.common  # noqa: F401  (Flower telemetry off before flwr is imported)
