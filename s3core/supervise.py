"""Child processes that die with the process that started them (docs/ARCHITECTURE.md, "Failure model").

The training stage starts the trainer (and, under the DeepSpeed launcher, its ranks) and the pipeline starts
generator servers. Each runs in its own process session, so a Ctrl-C in the terminal or a kill of the
stage's process group does not reach it. Left alone it would outlive a stage killed with SIGKILL: a trainer
that goes on writing checkpoints, a server that keeps its port. So every such child is started through a
supervisor:

    python -m s3core.supervise --parent PID -- COMMAND ...

COMMAND runs as the leader of a process group of its own (everything it starts, DeepSpeed ranks included,
joins that group), with PR_SET_PDEATHSIG = SIGKILL, so it dies if the supervisor is killed. The supervisor
watches its parent (the stage): when the parent is gone (its parent pid changes) it sends SIGTERM to the
child's group, waits `--grace` seconds, then SIGKILLs the group. A SIGTERM or SIGINT to the supervisor (how
the pipeline stops a server or a trainer, `stop_supervised`) stops the group the same way. The child's exit
code is the supervisor's. Output is inherited: a child that writes to a log file keeps every line, whatever
happens to the stage.

PR_SET_PDEATHSIG is not set on the supervisor itself: it fires when the *thread* that started a process
ends, and the pipeline starts servers from worker threads that end long before the run does.
What it does not cover: a SIGKILL of the supervisor alone (not of its parent, not its group) kills the
child through PR_SET_PDEATHSIG, but not what the child started (under the DeepSpeed launcher, the ranks).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
POLL_S = 0.2


def supervised(command: Sequence[str], grace_s: float = 5.0) -> list[str]:
    """`command` wrapped in a supervisor that stops it when this process dies."""
    return [sys.executable, "-m", "s3core.supervise", "--parent", str(os.getpid()), "--grace", str(grace_s), "--",
            *command]


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when the thread that started it exits (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def _log(message: str) -> None:
    print(f"[supervise {os.getpid()}] {message}", file=sys.stderr, flush=True)


def _stop_group(child: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM the child's group (the child and everything it started), wait, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:  # the group is empty
            break
        deadline = time.monotonic() + grace_s
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
    child.wait()
    return child.returncode


def run(parent: int, command: Sequence[str], grace_s: float) -> int:
    if os.getppid() != parent:
        _log(f"parent {parent} is already gone; not starting {command[0]}")
        return 1
    stop_requested = False

    def request_stop(signum, frame):
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    # a group of its own, and it dies with us
    child = subprocess.Popen(list(command), process_group=0, preexec_fn=die_with_parent)
    while True:
        code = child.poll()
        if code is not None:
            return code
        if stop_requested:
            return _stop_group(child, grace_s)
        if os.getppid() != parent:
            _log(f"parent {parent} died: stopping {command[0]} (pid {child.pid}) and its group")
            return _stop_group(child, grace_s)
        time.sleep(POLL_S)


def stop_supervised(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a supervised child from its parent: SIGTERM the supervisor (which stops the child's group) and
    wait; SIGKILL the supervisor's group if it is still alive after grace_s."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run COMMAND; stop it and its group when PARENT dies")
    parser.add_argument("--parent", type=int, required=True, help="pid of the process this one must not outlive")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    return run(args.parent, command, args.grace)


if __name__ == "__main__":
    sys.exit(main())
