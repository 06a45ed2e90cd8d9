"""Start a checkout run and wait for its result: ``python -m examples.quickstart.start``."""

from __future__ import annotations

import argparse
import uuid

from .app import checkout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.quickstart.start")
    parser.add_argument("--order-id", default=f"o-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    args = parser.parse_args(argv)

    # One run per order: starting the same order again returns the run already under way.
    run_id = f"checkout-{args.order_id}"
    handle = checkout.start(args.order_id, ["book", "pen"], 1999, run_id=run_id)
    print(f"run {handle.run_id} {'started' if handle.created else 'already exists'}")
    try:
        result = handle.result(timeout=args.timeout)
    except TimeoutError:
        print(f"still {handle.status()} after {args.timeout}s: is a worker running?")
        return 1
    print(f"result: {result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
