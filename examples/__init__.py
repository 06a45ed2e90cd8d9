"""Runnable examples of durable_celery, each with a short README."""
