"""Reliability and security suite: faults survived, bad input refused, nothing lost, nothing leaked."""
