"""``python -m shared.probe URL``: exit 0 when URL answers 200 (a container health check in
images that carry no curl)."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m shared.probe URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(argv[1], timeout=3) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{argv[1]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
