"""Durable reads its settings wherever a Celery project keeps them, and changes the app's own
settings (a router, ``accept_content``) only where the project left Celery's defaults."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from celery import Celery

from durable_celery import Durable

pytestmark = pytest.mark.timeout(30)

KEY = base64.b64encode(os.urandom(32)).decode()


def settings_module(redis_url: str, key_prefix: str, **more: Any) -> type:
    """What a project's ``celeryconfig`` holds, as a class ``config_from_object`` reads."""
    values = {
        "broker_url": redis_url,
        "durable_redis_url": redis_url,
        "durable_key_prefix": key_prefix,
        "durable_encryption_keys": {"k1": KEY},
        "durable_step_execution": "dispatch",
        **more,
    }
    return type("celeryconfig", (), values)


@pytest.mark.parametrize("order", ["config first", "durable first"])
def test_durable_settings_in_a_config_module_are_read(
    redis_url: str, key_prefix: str, order: str
) -> None:
    app = Celery("settings", set_as_current=False)
    module = settings_module(redis_url, key_prefix)
    if order == "config first":
        app.config_from_object(module)
        durable = Durable(app)
    else:
        durable = Durable(app)
        app.config_from_object(module)
    try:
        config = durable.config
        assert config.redis_url == redis_url
        assert config.key_prefix == key_prefix
        assert [kid for kid, _ in config.encryption_keys] == ["k1"]
        assert config.step_execution == "dispatch"
    finally:
        durable.runtime.store.client.close()  # type: ignore[attr-defined]
        app.close()


def test_namespaced_settings_are_read_as_celery_reads_its_own(
    redis_url: str, key_prefix: str
) -> None:
    """Django projects: ``config_from_object("django.conf:settings", namespace="CELERY")``."""
    module = type(
        "settings",
        (),
        {
            "CELERY_BROKER_URL": redis_url,
            "CELERY_DURABLE_KEY_PREFIX": key_prefix,
            "CELERY_DURABLE_STEP_EXECUTION": "inline",
        },
    )
    app = Celery("settings", set_as_current=False)
    app.config_from_object(module, namespace="CELERY")
    durable = Durable(app)
    try:
        assert durable.config.redis_url == redis_url  # the broker's, as documented
        assert durable.config.key_prefix == key_prefix
        assert durable.config.step_execution == "inline"
    finally:
        durable.runtime.store.client.close()  # type: ignore[attr-defined]
        app.close()


def test_plain_calls_of_a_step_task_are_still_routed_after_the_configuration_reloads(
    redis_url: str, key_prefix: str
) -> None:
    app = Celery("settings", set_as_current=False)
    app.conf.broker_url = redis_url  # loads the configuration now
    durable = Durable(app)

    @durable.step(queue="mail", name="shop.send_receipt")
    def send_receipt(order: str) -> str:
        return order

    assert app.amqp.router.route({}, send_receipt.task.name)["queue"].name == "mail"
    # Celery rebuilds app.conf: changes made to it before are gone, the router is put back.
    app.config_from_object(settings_module(redis_url, key_prefix, task_routes={"other": {}}))
    assert app.amqp.router.route({}, send_receipt.task.name)["queue"].name == "mail"
    assert len(app.conf.task_routes) == 2  # the project's, then Durable's, once
    app.close()


def test_msgpack_is_accepted_unless_the_project_chose_accept_content(
    redis_url: str, key_prefix: str
) -> None:
    left_alone = Celery("settings", set_as_current=False)
    Durable(left_alone)
    assert list(left_alone.conf.accept_content) == ["json", "msgpack"]

    updated = Celery("settings", set_as_current=False)
    updated.conf.update(accept_content=["json"])
    Durable(updated)
    assert list(updated.conf.accept_content) == ["json"]

    updated_later = Celery("settings", set_as_current=False)
    Durable(updated_later)
    updated_later.conf.update(accept_content=["json"])
    assert list(updated_later.conf.accept_content) == ["json"]

    from_module = Celery("settings", set_as_current=False)
    from_module.config_from_object(
        settings_module(redis_url, key_prefix, accept_content=["json", "auth"])
    )
    Durable(from_module)
    assert list(from_module.conf.accept_content) == ["json", "auth"]
    for app in (left_alone, updated, updated_later, from_module):
        app.close()
