"""Write a directory beside its target and swap it into place only when it is complete.

A tool that replaces its output (`--overwrite`) must not destroy the old output before the new
input has been read and checked: `staged_directory` yields a fresh directory next to the target
(same filesystem, so renames are cheap and never copy), removes it if the block raises, and on
success moves the old target aside, renames the new one into place and only then deletes the
old one. Between the two renames (microseconds) the target name is absent; a crash there leaves
the old output whole under `.<name>.old-<pid>` beside it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(
    target: str | os.PathLike,
    overwrite: bool,
    replaceable: Callable[[Path], bool] = lambda p: True,
) -> Iterator[Path]:
    """Yield the staging path (not yet created) for `target`; see the module docstring.

    Refuses up front (FileExistsError) a target that exists unless `overwrite`, and one that
    `replaceable` says is not this tool's output (e.g. not a zarr store)."""
    target = Path(target)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{target} exists and is not empty (pass overwrite to replace)")
        if not target.is_dir() or not replaceable(target):
            raise FileExistsError(f"refusing to overwrite {target}: it is not this tool's output")
    staging = target.parent / f".{target.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_into_place(staging, target)


def _swap_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
