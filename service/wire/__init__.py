"""The Kafka wire format: CloudEvents 1.0 JSON envelopes in, typed domain values out, and back."""
