"""Stopping a training run cleanly: the first Ctrl-C/SIGTERM finishes the current step and saves
`last`; a second one interrupts at once."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a whole step; `checkpoint` (last) holds everything."""

    def __init__(self, step: int, epoch: int, checkpoint: Path) -> None:
        super().__init__(f"interrupted at step {step} (epoch {epoch}); saved {checkpoint}")
        self.step, self.epoch, self.checkpoint = step, epoch, checkpoint


class StopRequests:
    """While training: the first Ctrl-C/SIGTERM asks to stop after the current step (so `last`
    is a consistent state); a second one interrupts at once. Main thread only; elsewhere (a
    trainer run from a thread) nothing is installed."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        if os.getpid() != self._pid:
            return  # a forked data-loader worker: it ends with the loader, not by itself
        if self.requested.is_set():
            raise KeyboardInterrupt
        self.requested.set()
        print("\ndp-train: stopping after this step (Ctrl-C again to abort)", flush=True)
