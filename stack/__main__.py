"""``make up``: start the whole stack in the foreground; Ctrl-C or SIGTERM stops it cleanly."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from stack.launcher import Stack
from stack.settings import StackSettings


def main() -> int:
    settings = StackSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s stack %(levelname)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stack = Stack(settings)
    try:
        info = stack.start()
    except Exception as exc:
        logging.error("start-up failed: %s", exc)
        stack.stop()
        return 1
    if stop.is_set():
        stack.stop()
        return 0
    others = "".join(
        f"\n  {name:<10} {url}/readyz" + (" (standby)" if name in info.standby else "")
        for name, url in info.health.items()
        if name != "edge"
    )
    up = [name for name in info.health if name not in info.standby]
    waiting = "".join(
        f"\n  {name} is a standby: {why}; it takes over when that process stops." for name, why in info.standby.items()
    )
    print(
        f"""
Switchyard is up ({", ".join(up)}).{waiting}

  base URL   {info.base_url or "(no edge on this node)"}
  admin key  {info.admin_key}
  data       {info.data_dir}
  logs       {info.data_dir / "logs"}{others}

Try it:  curl {info.base_url}/chat/completions -H "Authorization: Bearer {info.admin_key}" \\
           -H "Content-Type: application/json" \\
           -d '{{"model": "echo/hello", "messages": [{{"role": "user", "content": "Hello, Switchyard"}}]}}'

Ctrl-C stops everything.
""",
        flush=True,
    )
    stop.wait()
    logging.info("stopping")
    stack.stop()
    logging.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
