"""Metrics and logs: what SREs see of the worker."""
