"""Scenario files: the model, loading and validation, and the runner."""
