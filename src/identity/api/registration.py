"""Handlers registered as generic handlers only.

The generated `add_*_to_server` functions register every method twice: as a generic
handler and as a "registered method". grpc.aio then keeps one pending request per
registered method and, for every call it accepts, waits on all of them at once
(`asyncio.wait` over ~35 futures, each given and then stripped of a callback): a cost
paid by every call, and one that grows with the number of methods. With generic
handlers alone it waits on one future, and finding a method stays one dict lookup
(each generated generic handler is a dictionary of its service's methods)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import grpc


class GenericHandlersOnly:
    """What a generated `add_*_to_server` (and health, reflection) is handed instead of
    the server: generic handlers pass through; registered methods are not registered,
    as the generic handler added beside them already answers those methods."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(handlers))

    def add_registered_method_handlers(self, service_name: str, handlers: dict[str, Any]) -> None:
        """Deliberately nothing: see the module's docstring."""

    def as_server(self) -> grpc.aio.Server:
        """Typed as the server for the `add_*_to_server` functions, which call only the two
        methods above (duck typing)."""
        return cast(grpc.aio.Server, self)
