"""Library logging goes through structlog: one JSON object per line, the message
template and the exception's type, never its text (which could quote SQL or values)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import logging, warnings
import structlog
from identity.logging import configure_logging
configure_logging("info", "json")
try:
    raise RuntimeError("SELECT secret FROM users WHERE login = 'ann'\nsecond line")
except RuntimeError as exc:
    logging.getLogger("psycopg.pool").warning("error connecting in %r: %s", "identity", exc)
    logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=True)
logging.getLogger("psycopg.pool").info("chatter below WARNING")
warnings.warn("careful\nnow")
structlog.get_logger("identity.x").info("ours", detail=1)
"""


def test_library_lines_are_json_templates_without_exception_text() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]  # each line is one object
    assert [(line.get("logger"), line["event"]) for line in lines] == [
        ("psycopg.pool", "error connecting in %r: %s"),
        ("asyncio", "Task exception was never retrieved"),
        ("py.warnings", lines[2]["event"]),
        (None, "ours"),
    ]
    assert lines[0]["error_type"] == lines[1]["error_type"] == "RuntimeError"
    assert "UserWarning: careful" in lines[2]["event"]
    assert "SELECT" not in done.stderr and "Traceback" not in done.stderr


WRITER = r"""
import structlog
from identity.logging import configure_logging
configure_logging("info", "json")
log = structlog.get_logger("identity.x")
for n in range(3000):
    log.info("line", n=n, padding="x" * 200)
"""


def test_processes_sharing_one_stderr_never_cut_each_others_lines(tmp_path: Path) -> None:
    # The workers of `serve --workers N` share their supervisor's stderr.
    shared = tmp_path / "shared.log"
    with shared.open("wb") as out:
        writers = [subprocess.Popen([sys.executable, "-c", WRITER], stderr=out) for _ in range(3)]
        assert all(writer.wait(timeout=60) == 0 for writer in writers)
    lines = shared.read_text().splitlines()
    assert len(lines) == 3 * 3000
    assert sorted(json.loads(line)["n"] for line in lines) == sorted(list(range(3000)) * 3)
