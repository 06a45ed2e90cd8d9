"""One orchestration pass and everything around it: caches, steps, timers, the run client."""

from .core import Runtime

__all__ = ["Runtime"]
