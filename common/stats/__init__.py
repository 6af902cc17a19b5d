"""Federated statistics: moments, screening and redundancy, evaluation metrics, splits."""
