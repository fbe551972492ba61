"""How much memory this machine gives a process, and a check run before large buffers are made.

A buffer bigger than the memory is refused with a :class:`~caloforge.errors.UserError` before it
is allocated (NumPy would raise MemoryError, or the kernel's OOM killer end the process half-way).
"""

from __future__ import annotations

import contextlib
import os

from caloforge.errors import UserError


def memory_bytes() -> int:
    """Physical memory (``sysconf``), or the cgroup limit of this container if lower; bytes."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError), open(limit_file) as fh:
            total = min(total, int(fh.read().strip()))
    return int(total)


def check_memory(nbytes: float, what: str) -> None:
    """Raise UserError ``"<what>: needs X GB of buffers; exceed the machine's memory (Y GB)"``
    when ``nbytes`` is more than the memory :func:`memory_bytes` reports."""
    have = memory_bytes()
    if nbytes > have:
        raise UserError(f"{what}: needs {nbytes / 1e9:.3g} GB of buffers, which exceed the "
                        f"machine's memory ({have / 1e9:.3g} GB); use smaller blocks")


__all__ = ["check_memory", "memory_bytes"]
