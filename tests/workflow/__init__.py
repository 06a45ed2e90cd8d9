"""Tests of the authoring API: steps, retries, gather, starting runs."""
