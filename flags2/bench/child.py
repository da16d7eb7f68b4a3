"""Children that die with the process that started them, even a SIGKILLed one.

A bench or a test run that is killed (SIGKILL, the OOM killer, pytest-timeout's
``os._exit``) runs no cleanup of its own, so its children must hear of its death
from the kernel. On Linux that is ``prctl(PR_SET_PDEATHSIG)``, called in the
child between fork and exec (it survives exec)::

    proc = subprocess.Popen(argv, preexec_fn=die_with_parent(signal.SIGKILL))

The signal comes when the *thread* that started the child ends, not only the
process: start such children from a thread that outlives them (the main
thread, or the one that waits for them). Other systems have no such call;
there :func:`die_with_parent` returns None (no preexec function) and children
end as they would anyway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent(signum: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child `signum` once this process dies.

    None where the platform has no parent-death signal (all but Linux). Call
    it in the parent just before starting the child: the C function is looked
    up here, so the forked child runs no import (another thread may have held
    the import lock at fork time).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        if prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signum)) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # it died before the call: too late to hear
            os.kill(os.getpid(), signum)

    return in_child
