"""Quickstart: a checkout workflow (reserve, charge with retries, send a receipt)."""
