"""Developer tools: broker harness, provider fakes, traffic; not shipped."""
