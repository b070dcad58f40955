"""Private key files: written readable by their owner only (0600), refused when the group or
others may read or write them (a key another account could read is no longer a secret)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

OWNER_ONLY_MODE = 0o600
# Permission bits a key file must not have: any for the group or for others.
FORBIDDEN_MODE_BITS = stat.S_IRWXG | stat.S_IRWXO


class KeyFileError(Exception):
    """A key file is readable or writable beyond its owner."""


def check_private(path: Path) -> None:
    """Raise KeyFileError when `path` grants the group or others any access."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & FORBIDDEN_MODE_BITS:
        raise KeyFileError(f"key file {path} has mode {mode:04o}: the group and others must have"
                           f" no access (chmod 600 {path})")


def read_private(path: Path) -> bytes:
    """A key file's bytes, once its mode is checked."""
    check_private(path)
    return path.read_bytes()


def write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write a new key file with mode 0600 (created so, never widened for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, OWNER_ONLY_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, OWNER_ONLY_MODE)  # O_TRUNC of an existing file keeps its old mode
