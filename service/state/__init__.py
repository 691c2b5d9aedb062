"""Durable per-partition state: the changelog codec, the in-memory store and its deadline heap."""
