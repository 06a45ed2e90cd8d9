"""Tests of the runtime: orchestration passes, caches, live executions, wakes."""
