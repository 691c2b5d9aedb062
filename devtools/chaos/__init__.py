"""Fault injection: real worker processes, real signals, a real broker that gets killed.

A generator plays a seeded mix of handoff rounds (joined in time, ended, left to expire, joined
too late); a controller kills, pauses, scales and restarts workers and the broker at seeded
random moments; a checker reads every output with `read_committed` and compares each round's
outcome with what it should be. `python -m devtools.chaos --help`.
"""
