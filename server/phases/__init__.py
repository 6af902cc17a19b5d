"""The study's phases. Each one configures its requests, asks the federation, and
aggregates the validated replies into the pooled piece it fits (DESIGN.md phases 1-6)."""
