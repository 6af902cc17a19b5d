"""The site: manifest + QC, feature cache, Flower ClientApp, local statistics."""

import fedrad.common  # noqa: F401  (Flower telemetry off before flwr is imported)
