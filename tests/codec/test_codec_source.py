"""The codec's source itself: it never pickles, and and it imports no Redis or Celery."""

from __future__ import annotations

import ast
from pathlib import Path

import durable_celery.codec

CODEC_DIR = Path(durable_celery.codec.__file__).resolve().parent
FORBIDDEN = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "shelve", "marshal"}
FORBIDDEN |= {"redis", "celery", "kombu"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and node.value in FORBIDDEN:
            # importlib.import_module("pickle") would not be an import statement.
            roots.add(str(node.value))
    return roots


def test_the_codec_source_files_exist() -> None:
    assert len(list(CODEC_DIR.glob("*.py"))) >= 5


def test_no_codec_module_imports_pickle_or_redis_or_celery() -> None:
    for path in CODEC_DIR.glob("*.py"):
        assert not imported_roots(path) & FORBIDDEN, path.name


def test_the_scan_would_see_a_pickle_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from pickle import loads\nimportlib.import_module('dill')\n")
    assert imported_roots(sample) >= {"pickle", "dill"}
