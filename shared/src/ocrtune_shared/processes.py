"""Process plumbing both services need: a child that dies with its parent."""

from __future__ import annotations

import signal
import sys


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send this process ``sig`` when its parent dies, even by kill -9 (prctl
    PR_SET_PDEATHSIG). Returns False where that is not available. The signal is tied to the
    parent THREAD that started the process: call it in a child whose parent keeps that thread."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        pr_set_pdeathsig = 1
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, sig) == 0
    except OSError:
        return False
