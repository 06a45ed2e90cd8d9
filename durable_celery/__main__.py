"""``python -m durable_celery demo``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m durable_celery")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a real workflow on the embedded default (no server needed)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo

        return demo()
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":
    sys.exit(main())
