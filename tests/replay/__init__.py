"""Tests of the replay engine: deterministic re-execution of workflows from their log."""
