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


def process_alive(pid: int, *, reap_child: bool = False) -> bool:
    """Whether process ``pid`` runs; a zombie (exited, not yet reaped) is not alive.

    ``reap_child``: when ``pid`` is our child, reap it here if it exited. Off by default: a
    parent that waits on its child itself (``subprocess.Popen.wait``) must get the exit status.
    """
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if reap_child:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            return waited == 0
        except ChildProcessError:  # not our child: ask /proc
            pass
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
