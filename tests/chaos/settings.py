"""Settings both chaos apps share: broker keys under the test's prefix, and every recovery
interval short enough to act within a test's bounds."""

from __future__ import annotations

from typing import Any


def chaos_settings(redis_url: str, prefix: str, queue: str, execution: str) -> dict[str, Any]:
    return {
        "task_default_queue": queue,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        # Unacked messages of a dead worker come back after ``visibility_timeout``: a live worker
        # restores them at start and then every ``unacked_restore_interval *
        # unacked_restore_throttle`` seconds (kombu's defaults, 1 hour and 100 s, would outlast
        # the test).
        "broker_transport_options": {
            "global_keyprefix": f"{prefix}:kombu:",
            "visibility_timeout": 5,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        "durable_redis_url": redis_url,
        "durable_key_prefix": prefix,
        "durable_step_execution": execution,
        "durable_timer_poll_interval": 0.1,
        # A pass killed holding its lease blocks the run's next pass for this long...
        "durable_lease_timeout": 5.0,
        # ...and a wake lost with a killed worker is found again this soon.
        "durable_sweep_interval": 2.0,
    }
