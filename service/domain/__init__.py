"""The pure core: events, handoff rounds, fan-out rules and the effects they produce.

Nothing in this package imports asyncio, aiokafka or a provider client. Every decision is a
plain function of (state, input, now) returning the new state and a list of effects, so it is
tested with plain values (tests/unit/domain).
"""
