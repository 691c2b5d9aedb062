"""Per-partition processing, without Kafka: decode → decide → apply a partition's records, fan-out
reports and due timers, and report what a committed step did. The Kafka adapters feed it records
and commit what it returns."""
