"""The supervisor's health rule, without processes: a worker is admitted to answer
SERVING only once every worker of the first start is ready, and a replacement is
admitted as soon as it is ready itself (the others keep serving meanwhile)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from identity.config import Settings
from identity.supervisor import Supervisor, SupervisorError, Worker, split_listen


@dataclass
class FakeWriter:
    written: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.written.append(data)


@dataclass
class FakeProcess:
    pid: int


def worker(index: int, *, ready: bool) -> Worker:
    process = cast(Any, FakeProcess(1000 + index))
    return Worker(index, process, cast(Any, None), cast(Any, FakeWriter()), ready=ready)


def admitted(w: Worker) -> bool:
    return cast(FakeWriter, w.writer).written == [b"admit\n"]


def test_no_worker_is_admitted_until_every_worker_is_ready() -> None:
    supervisor = Supervisor(Settings(), 2)
    first, second = worker(0, ready=True), worker(1, ready=False)
    supervisor._workers = {0: first, 1: second}
    supervisor._admit_when_all_ready()
    assert not admitted(first) and not admitted(second)
    second.ready = True
    supervisor._admit_when_all_ready()
    assert admitted(first) and admitted(second)
    supervisor._admit_when_all_ready()  # said once, not on every pass
    assert admitted(first) and admitted(second)


def test_a_replacement_is_admitted_once_it_is_ready() -> None:
    supervisor = Supervisor(Settings(), 2)
    first, second = worker(0, ready=True), worker(1, ready=True)
    supervisor._workers = {0: first, 1: second}
    supervisor._admit_when_all_ready()
    replacement = worker(1, ready=False)
    supervisor._workers[1] = replacement
    supervisor._admit_when_all_ready()
    assert not admitted(replacement)
    replacement.ready = True
    supervisor._admit_when_all_ready()
    assert admitted(replacement)


def test_listen_addresses() -> None:
    assert split_listen("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert split_listen("[::1]:0") == ("::1", 0)
    with pytest.raises(SupervisorError):
        split_listen("localhost")
    with pytest.raises(SupervisorError):
        Supervisor(Settings(), 0)
