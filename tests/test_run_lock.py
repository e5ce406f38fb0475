"""ltf/run_lock.py: one holder at a time, shared with the training process, freed by any death."""

import os
import signal
import subprocess
import sys
import time

from ltf.run_lock import RunLock, holder


def test_a_held_run_cannot_be_taken_until_it_is_released(tmp_path):
    first = RunLock.acquire(tmp_path / "run")
    assert first is not None and RunLock.acquire(tmp_path / "run") is None
    assert f"pid {os.getpid()} since " in holder(tmp_path / "run")
    first.release()
    first.release()  # twice is harmless
    again = RunLock.acquire(tmp_path / "run")
    assert again is not None
    again.release()
    assert holder(tmp_path / "never") == ""


def test_the_training_process_holds_the_lock_and_a_sigkill_frees_it(tmp_path):
    lock = RunLock.acquire(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=[lock.fd])
    try:
        lock.release()  # the worker's descriptor closed: the child still holds the run
        assert RunLock.acquire(tmp_path) is None
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.monotonic() + 5
        while (taken := RunLock.acquire(tmp_path)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert taken is not None
        taken.release()
    finally:
        child.kill()
