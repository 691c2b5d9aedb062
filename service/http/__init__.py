"""The operations endpoints: /metrics, /healthz, /readyz."""
