"""FedRad."""
