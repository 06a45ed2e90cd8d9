"""The only package that imports Celery: tasks, bootsteps, signals, dispatcher."""

from .extension import Durable

__all__ = ["Durable"]
