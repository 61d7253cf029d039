"""Password hashing: bcrypt off the event loop, bounded so a login flood cannot
take every thread.

bcrypt reads only 72 bytes, and 64 emoji are 256. So the normalised password is
first reduced to base64(HMAC-SHA256(key="identity.password.v1", password)): 44
ASCII bytes with no NUL, in which every character of the password counts. The
first 72 bytes of a longer password therefore never log in."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from concurrent.futures import ThreadPoolExecutor

import bcrypt

from identity.domain.observer import NOOP, Observer

_PREHASH_KEY = b"identity.password.v1"


def _prehash(password: str) -> bytes:
    digest = hmac.new(_PREHASH_KEY, password.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest)


class PasswordHasher:
    def __init__(self, rounds: int, concurrency: int, observer: Observer = NOOP) -> None:
        self._observer = observer
        self._rounds = rounds
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bcrypt")
        self._slots = asyncio.Semaphore(concurrency)
        # Checked for unknown logins so they cost the same time as a wrong password.
        self._dummy_hash = bcrypt.hashpw(_prehash("identity.dummy.password"), bcrypt.gensalt(rounds))

    async def _run(self, operation: str, fn: object, *args: bytes) -> object:
        with self._observer.bcrypt(operation):
            async with self._slots:
                return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)  # type: ignore[arg-type]

    async def hash(self, password: str) -> bytes:
        salt = bcrypt.gensalt(self._rounds)
        result = await self._run("hash", bcrypt.hashpw, _prehash(password), salt)
        assert isinstance(result, bytes)
        return result

    async def verify(self, password: str, password_hash: bytes | None) -> bool:
        """Constant work whether or not there is a hash to compare with."""
        target = password_hash if password_hash is not None else self._dummy_hash
        matched = await self._run("verify", bcrypt.checkpw, _prehash(password), target)
        return bool(matched) and password_hash is not None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
