"""The repository's generated artefacts and contracts stay honest."""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _buf() -> str | None:
    return shutil.which("buf") or next((str(p) for p in [ROOT / "node_modules/.bin/buf"] if p.exists()), None)


def test_generated_code_is_in_sync_with_protos(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts/gen-protos"), "--out", str(tmp_path)], check=True)
    comparison = filecmp.dircmp(tmp_path, ROOT / "generated")
    stale: list[str] = []

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        stale.extend(prefix + name for name in cmp.left_only + cmp.right_only + cmp.diff_files)
        # dircmp compares shallowly; compare bytes for certainty.
        stale.extend(
            prefix + name
            for name in cmp.same_files
            if (Path(cmp.left) / name).read_bytes() != (Path(cmp.right) / name).read_bytes()
        )
        for name, sub in cmp.subdirs.items():
            if name != "__pycache__":
                walk(sub, f"{prefix}{name}/")

    walk(comparison, "")
    stale = [name for name in stale if "__pycache__" not in name]
    assert not stale, f"generated/ is stale, run scripts/gen-protos: {stale}"


def test_buf_lint_is_clean() -> None:
    buf = _buf()
    if buf is None:
        pytest.fail("buf is not installed: run `make install`")
    result = subprocess.run(
        [str(ROOT / "scripts/buf"), "lint"], capture_output=True, text=True, env=_env(buf)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_previous_commit() -> None:
    buf = _buf()
    if buf is None:
        pytest.fail("buf is not installed: run `make install`")
    has_parent = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", "HEAD~1"], capture_output=True
    )
    if has_parent.returncode != 0:
        pytest.skip("no previous commit to compare against (shallow clone or first commit)")
    previous_protos = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", "HEAD~1", "protos"],
        capture_output=True,
        text=True,
    )
    if not previous_protos.stdout.strip():
        pytest.skip("the previous commit has no protos")
    result = subprocess.run(
        [str(ROOT / "scripts/buf"), "breaking-since", "HEAD~1"],
        capture_output=True,
        text=True,
        env=_env(buf),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _env(buf: str) -> dict[str, str]:
    import os

    return {**os.environ, "BUF": buf, "PYTHON": sys.executable}


def test_tests_flush_only_a_redis_they_started() -> None:
    """FLUSHALL/FLUSHDB is only ever sent to the suite's private Redis (tests/private_redis.py):
    the Redis the suite is given may hold a developer's stack or anyone's data."""
    offenders = []
    for path in (ROOT / "tests").rglob("*.py"):
        text = path.read_text()
        flushes = len(re.findall(r"\.flush(?:all|db)\(", text, re.IGNORECASE))
        if flushes and "private_redis_url" not in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
