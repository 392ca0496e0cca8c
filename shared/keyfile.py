"""Files that hold a private key: readable by their owner (and, for a Kubernetes Secret mounted
for the pod's group, by that group), by no other user. No cryptography is imported here: the
edge's parent process checks its identity file with this before starting workers, without the
library's memory."""

from __future__ import annotations

import stat
from pathlib import Path


def private_file_problem(path: Path) -> str | None:
    """What is wrong with ``path`` as a private key file, or None."""
    try:
        mode = path.stat().st_mode
        head = path.read_bytes()[:64]
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    # Like ssh, but a group may read it: Kubernetes mounts a Secret as root:fsGroup 0440.
    if mode & (stat.S_IWGRP | stat.S_IRWXO):
        return f"{path} is open to other users; chmod 600 it"
    if b"PRIVATE KEY-----" not in head:
        return f"{path} is not an unencrypted PEM private key"
    return None
