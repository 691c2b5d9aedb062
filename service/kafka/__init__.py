"""Kafka adapters: the consumer loop, per-partition transactions, restore, directories, topics."""
