"""One worker at a time per run: a lock file in each run dir, so that a sweep started twice on one
workdir (or on machines sharing it without `--shard`) never trains a run in two places at once.

    lock = RunLock.acquire(run_dir)    # None when another worker holds the run
    subprocess.Popen(..., pass_fds=[lock.fd])   # the training process holds it too
    lock.release()                     # after the training process has ended

The lock is `flock(LOCK_EX | LOCK_NB)` on `<run dir>/LOCK`. The kernel releases it when every
process holding the open file has ended, however it ended (SIGKILL included), so a lock never
outlives its worker and there is no timeout to tune. The training process inherits the
descriptor: a worker killed while its training process lives still holds the run until that
process ends too. The file itself holds who took it last (host, pid, time), for the messages of
the workers that skip the run; its presence means nothing.

On NFS, Linux emulates flock with the server's byte-range locks (NFSv4): still exclusive across
machines, but held per process, so there only the worker holds the lock, not the training
process it started.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

LOCK_FILE = "LOCK"


@dataclasses.dataclass
class RunLock:
    path: Path
    fd: int  # the open lock file; -1 once released

    @classmethod
    def acquire(cls, run_dir: str | Path) -> "RunLock | None":
        """The run's lock, taken now without waiting; None when another worker holds it."""
        path = Path(run_dir) / LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        held_by = {"host": socket.gethostname(), "pid": os.getpid(),
                   "since": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(held_by) + "\n").encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Closes this worker's descriptor: the lock is free once no process holds it."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def holder(run_dir: str | Path) -> str:
    """Who took the run's lock last, as 'host pid N since T' ('' when never locked)."""
    try:
        held_by = json.loads((Path(run_dir) / LOCK_FILE).read_text())
        return f"{held_by['host']} pid {held_by['pid']} since {held_by['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
