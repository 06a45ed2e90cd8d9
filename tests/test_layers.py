"""Layers import downward only (DESIGN.md section 9, STYLE.md house rule 1).

Every module of ``durable_celery/`` is parsed (not imported) with :mod:`ast`, so a broken or
half-written module elsewhere cannot hide a violation here. Every import counts: ``import x``,
``from x import y``, relative imports resolved against the module's package, imports under
``if TYPE_CHECKING:`` (a layer that names Celery's types depends on Celery), and
``importlib.import_module("x")`` / ``__import__("x")`` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "durable_celery"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

#: The Celery layer: the only modules that may import celery, kombu or billiard.
CELERY_LAYER = (
    f"{PACKAGE}.integration",
    f"{PACKAGE}.cli",
    f"{PACKAGE}.testing",
    f"{PACKAGE}.__main__",
    f"{PACKAGE}.demo",
)
CELERY = ("celery", "kombu", "billiard")
REDIS = ("redis", "fakeredis", "hiredis", "lupa")
PICKLE = ("pickle", "_pickle", "cloudpickle", "dill")


def _ours(*names: str) -> tuple[str, ...]:
    return tuple(f"{PACKAGE}.{name}" for name in names)


@dataclass(frozen=True)
class Rule:
    """Modules under ``scope`` must not import anything under ``forbidden``.

    Modules under ``exempt``, and the modules named exactly in ``exempt_modules``, are let off.
    """

    why: str
    scope: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()
    exempt_modules: tuple[str, ...] = ()

    def applies_to(self, module: str) -> bool:
        return (
            _under(module, self.scope)
            and not _under(module, self.exempt)
            and module not in self.exempt_modules
        )


RULES = (
    Rule(
        "only the Celery layer (integration/, cli.py, testing/, __main__.py, demo.py) "
        "imports Celery",
        scope=(PACKAGE,),
        forbidden=CELERY,
        exempt=CELERY_LAYER,
    ),
    Rule(
        "the Celery layer sits on top: nothing below it imports it "
        "(durable_celery/__init__.py may re-export from integration/)",
        scope=(PACKAGE,),
        forbidden=CELERY_LAYER,
        exempt=CELERY_LAYER,
        exempt_modules=(PACKAGE,),
    ),
    Rule(
        "workflow/ and replay/ are pure: no Redis, no Celery, no storage, no runtime",
        scope=_ours("workflow", "replay"),
        forbidden=(*REDIS, *CELERY, *_ours("store", "runtime", "integration", "cli", "testing")),
    ),
    Rule(
        "codec/ knows no Redis or Celery, and never pickles",
        scope=_ours("codec"),
        forbidden=(*REDIS, *CELERY, *PICKLE, *_ours("runtime", "integration", "cli", "testing")),
    ),
    Rule(
        "store/ knows no Celery and nothing above it",
        scope=_ours("store"),
        forbidden=(*CELERY, *_ours("runtime", "integration", "cli", "testing", "workflow")),
    ),
    Rule(
        "runtime/ knows no Celery: the integration layer drives it",
        scope=_ours("runtime"),
        forbidden=(*CELERY, *_ours("integration", "cli", "testing")),
    ),
)


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.why}"


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    """``durable_celery/store/redis.py`` -> ``durable_celery.store.redis``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(module: str, source: str, *, is_package: bool) -> Iterator[tuple[int, str]]:
    """Yield ``(line, absolute module name)`` for every import in ``source``.

    ``from a import b`` yields both ``a`` and ``a.b``, because ``b`` may be a submodule
    (``from .. import store``). When ``b`` is only an attribute, ``a.b`` lies under ``a`` and
    breaks no rule that ``a`` does not already break.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                if node.level - 1 >= len(anchor) or not package:
                    yield node.lineno, f"<relative import beyond {PACKAGE}: level {node.level}>"
                    continue
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def check_module(module: str, source: str, *, is_package: bool = False) -> list[Violation]:
    """Every import of ``module`` that breaks a rule, once per line, rule and imported module."""
    found: dict[tuple[int, str, str], Violation] = {}
    for line, imported in imported_names(module, source, is_package=is_package):
        if imported.startswith("<"):
            found[(line, imported, "")] = Violation(module, line, imported, "cannot be resolved")
            continue
        for rule in RULES:
            if rule.applies_to(module) and _under(imported, rule.forbidden):
                found.setdefault(
                    (line, imported, rule.why), Violation(module, line, imported, rule.why)
                )
    # `from celery import Celery` is one violation (celery), not two (celery, celery.Celery).
    return [
        v
        for (line, imported, why), v in found.items()
        if not any(
            (line, parent, why) in found
            for parent in (imported.rsplit(".", n)[0] for n in range(1, imported.count(".") + 1))
        )
    ]


def check_package(root: Path) -> tuple[int, list[Violation]]:
    """Check every ``.py`` file under ``root`` (a package directory): (modules seen, violations)."""
    paths = sorted(path for path in root.rglob("*.py") if "__pycache__" not in path.parts)
    violations = [
        violation
        for path in paths
        for violation in check_module(
            module_name(path, root),
            path.read_text(encoding="utf-8"),
            is_package=path.name == "__init__.py",
        )
    ]
    return len(paths), violations


# -- the package ------------------------------------------------------------------------------


def test_every_module_of_the_package_imports_only_from_the_layers_below_it() -> None:
    seen, violations = check_package(PACKAGE_DIR)
    assert seen, f"no modules found under {PACKAGE_DIR}: the checker would check nothing"
    assert not violations, "layering broken (DESIGN.md section 9):\n" + "\n".join(
        map(str, violations)
    )


# -- the checker itself: each rule can fail ---------------------------------------------------


def _reported(module: str, source: str, *, is_package: bool = False) -> set[str]:
    return {v.imported for v in check_module(module, source, is_package=is_package)}


def test_a_celery_import_in_the_workflow_layer_is_reported() -> None:
    source = "import celery\nfrom kombu import Connection\n"
    assert _reported("durable_celery.workflow.api", source) >= {"celery", "kombu"}


def test_redis_in_the_replay_engine_is_reported_even_when_only_imported_for_typing() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from redis import Redis\n"
        "import fakeredis.aioredis\n"
    )
    assert _reported("durable_celery.replay.engine", source) >= {"redis", "fakeredis.aioredis"}


def test_relative_imports_are_resolved_against_the_modules_package() -> None:
    source = "from ..store import redis\nfrom .. import runtime\nfrom ...durable_celery import x\n"
    reported = _reported("durable_celery.replay.engine", source)
    assert {"durable_celery.store", "durable_celery.runtime"} <= reported
    assert any(name.startswith("<relative import beyond") for name in reported)


def test_relative_imports_in_a_package_init_start_from_that_package() -> None:
    # In durable_celery/store/__init__.py, "." is durable_celery.store itself.
    init = "from .redis import RedisStore\n"
    assert _reported("durable_celery.store", init, is_package=True) == set()
    assert "durable_celery.workflow" in _reported(
        "durable_celery.store", "from ..workflow import sleep\n", is_package=True
    )


def test_pickle_in_the_codec_is_reported() -> None:
    assert _reported("durable_celery.codec.types", "import pickle\n") == {"pickle"}
    assert _reported("durable_celery.codec.types", "import msgpack\n") == set()


def test_a_dynamic_import_of_redis_in_the_workflow_layer_is_reported() -> None:
    source = "import importlib\nimportlib.import_module('redis')\n__import__('celery')\n"
    assert _reported("durable_celery.workflow.api", source) >= {"redis", "celery"}


def test_the_store_may_use_the_replay_vocabulary_but_not_the_runtime_or_celery() -> None:
    source = "from ..replay.events import Event\nfrom ..runtime import cache\nimport celery\n"
    reported = _reported("durable_celery.store.redis", source)
    assert "durable_celery.runtime" in reported
    assert "celery" in reported
    assert not any(name.startswith("durable_celery.replay") for name in reported)


def test_the_runtime_may_not_reach_up_into_the_integration_layer() -> None:
    source = "from ..integration.tasks import orchestrate\nfrom ..store import base\n"
    assert _reported("durable_celery.runtime.orchestrator", source) == {
        "durable_celery.integration.tasks"
    }


def test_the_celery_layer_may_import_celery_and_the_package_may_re_export_it() -> None:
    assert _reported("durable_celery.integration.tasks", "import celery\nimport kombu\n") == set()
    assert _reported("durable_celery.cli", "import click\nfrom celery.bin import base\n") == set()
    init = "from .integration import Durable\nfrom .errors import DurableError\n"
    assert _reported("durable_celery", init, is_package=True) == set()


def test_the_package_init_may_not_import_celery_directly() -> None:
    assert _reported("durable_celery", "from celery import Celery\n", is_package=True) == {"celery"}


def test_a_top_level_module_may_not_import_the_celery_layer() -> None:
    assert "durable_celery.integration" in _reported(
        "durable_celery.config", "from .integration import app_settings\n"
    )


def test_a_violating_file_in_a_package_tree_is_found_and_named(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    (root / "workflow").mkdir(parents=True)
    (root / "__init__.py").write_text("from .integration import Durable\n")
    (root / "workflow" / "__init__.py").write_text("")
    (root / "workflow" / "api.py").write_text('"""Fine so far."""\n\nfrom ..store import base\n')
    seen, violations = check_package(root)
    assert seen == 3
    assert [(v.module, v.line, v.imported) for v in violations] == [
        ("durable_celery.workflow.api", 3, "durable_celery.store"),
    ]
