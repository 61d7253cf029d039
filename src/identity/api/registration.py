"""Every method of the server, found with one dict lookup and wrapped once.

The generated `add_*_to_server` functions register every method twice: as a generic
handler and as a "registered method". grpc.aio then keeps one pending request per
registered method and, for every call it accepts, waits on all of them at once
(`asyncio.wait` over ~35 futures, each given and then stripped of a callback): a cost
paid by every call, and one that grows with the number of methods. So they are handed a
`HandlerRegistry` instead of the server: it keeps the generic handlers, drops the
registered methods, and stands before the server as its only generic handler.

It also applies the server's wrapping (the error mapping of api/interceptor.py) to each
method the first time it is called, and keeps the result: per call that is the dict
lookup alone, where a grpc.aio interceptor costs two more coroutines and a partial."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeAlias, cast

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Wrap: TypeAlias = Callable[[str, Handler], Handler]


class HandlerRegistry(grpc.GenericRpcHandler):
    def __init__(self, server: grpc.aio.Server, wrap: Wrap) -> None:
        self._wrap = wrap
        self._generic: list[grpc.GenericRpcHandler] = []
        # Only methods that exist are kept: a caller's made-up names never reach it.
        self._found: dict[str, Handler] = {}
        server.add_generic_rpc_handlers((self,))

    # -- what the generated `add_*_to_server` functions call ------------------------------

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: dict[str, Any]) -> None:
        """Deliberately nothing: the generic handler added beside them answers these
        methods (see the module's docstring)."""

    def as_server(self) -> grpc.aio.Server:
        """Typed as the server for the `add_*_to_server` functions, which call only the two
        methods above (duck typing)."""
        return cast(grpc.aio.Server, self)

    # -- what grpc calls, for every call --------------------------------------------------

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        found = self._found.get(handler_call_details.method)
        return found if found is not None else self._find(handler_call_details)

    def _find(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        for generic in self._generic:
            handler = generic.service(handler_call_details)
            if handler is not None:
                method = handler_call_details.method
                found = self._found[method] = self._wrap(method, handler)
                return found
        return None
