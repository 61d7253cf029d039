"""Progress of long partition work, on stderr: a bar on a terminal (rich), a count
line per step otherwise, so logs of a scheduled job still say how far it got."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

Reporter = Callable[[int, int, str], None]


@contextmanager
def progress_on_stderr(what: str) -> Iterator[Reporter]:
    if not sys.stderr.isatty():

        def count(done: int, total: int, current: str) -> None:
            if current:
                typer.echo(f"{what}: {done + 1}/{total} {current}", err=True)

        yield count
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int, current: str) -> None:
            bar.update(task, completed=done, total=total, description=f"{what} {current}".rstrip())

        yield update
