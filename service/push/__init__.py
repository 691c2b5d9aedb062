"""Push delivery: provider-neutral push requests, the sender protocol and one adapter per provider."""
