"""Benchmarks: extraction against plain pyradiomics, the protocol over many sites."""
