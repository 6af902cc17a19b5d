"""Code both sides share: config, feature schema, federated math, metrics, the CLI.

Importing it turns Flower's telemetry and update checks off (hospital machines are
often offline and must not call out) unless the operator set them explicitly.
"""

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
