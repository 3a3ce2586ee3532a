"""A real small filesystem for disk-full tests: a tmpfs of a few hundred KB, mounted for one
test (which needs root, or CAP_SYS_ADMIN; elsewhere the test is skipped, saying why)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class SmallDisk:
    """A mounted tmpfs; ``fill()`` takes every free byte, ``free(n)`` gives ``n`` back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._filler = root / "filler"

    def fill(self) -> None:
        chunk = b"\0" * 4096
        with contextlib.suppress(OSError), open(self._filler, "ab") as fh:
            while True:
                fh.write(chunk)
                fh.flush()
        # The last bytes, one at a time (where the filesystem has any left).
        with contextlib.suppress(OSError), open(self._filler, "ab", buffering=0) as raw:
            while raw.write(b"\0"):
                pass
        assert self.available() < 4096, self.available()

    def free(self, nbytes: int) -> None:
        size = self._filler.stat().st_size
        os.truncate(self._filler, max(size - nbytes, 0))

    def free_all(self) -> None:
        self._filler.unlink(missing_ok=True)

    def available(self) -> int:
        return shutil.disk_usage(self.root).free


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[SmallDisk]:
    """Mount a tmpfs of ``size`` (e.g. "2m") at ``where`` for the ``with`` block."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here: the disk-full tests need a small real filesystem")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs ({done.stderr.strip() or done.returncode}); the "
            f"disk-full tests need root or CAP_SYS_ADMIN"
        )
    try:
        yield SmallDisk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
