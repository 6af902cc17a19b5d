"""Synthetic multi-center cohorts: MRI volumes with scanner effects, and feature tables."""
