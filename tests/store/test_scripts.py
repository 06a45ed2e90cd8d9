"""The Lua scripts: one file each, a KEYS/ARGV header, all registered."""

from __future__ import annotations

from importlib.resources import files

import pytest

from durable_celery.store.scripts import SCRIPT_NAMES, lua_source

LUA_DIR = files("durable_celery.store") / "lua"


def test_every_lua_file_is_a_registered_script_and_every_script_has_a_file() -> None:
    on_disk = {p.name.removesuffix(".lua") for p in LUA_DIR.iterdir() if p.name.endswith(".lua")}
    assert on_disk == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_script_starts_with_a_header_naming_its_keys_and_args(name: str) -> None:
    source = lua_source(name)
    header = []
    for line in source.splitlines():
        if not line.startswith("--"):
            break
        header.append(line)
    assert header and header[0].startswith(f"-- {name}:")
    text = "\n".join(header)
    assert "KEYS[1]" in text and "ARGV" in text


def test_an_unknown_script_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Lua script"):
        lua_source("drop_everything")
