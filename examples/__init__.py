"""Example participants written against the public participant API (docs/participants.md)."""
