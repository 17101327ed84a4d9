"""A request body that does not parse gets INVALID_ARGUMENT, like any other bad request.

gRPC's asyncio server deserializes a request before any handler runs. When the bytes are not a valid
message (truncated, a corrupt varint, a string field that is not UTF-8, a wrong wire type), the
server answers UNKNOWN with the parser's exception text and logs a traceback per request: a caller
can fill a node's log at wire speed and cannot tell its own mistake from a server bug.

`DecodeGuard` is a server interceptor (`grpc.aio.server(interceptors=[DecodeGuard()])`, in
node.channels.server()) that wraps every method's request deserializer: a body that fails to parse
becomes an `Undecodable` marker, and the wrapped handler refuses it with INVALID_ARGUMENT ("request
is not a valid bullyproof.v1.PeerMessage: ...") before the real handler sees anything. Messages that
do parse reach the real handler unchanged. It covers all four kinds of method (unary and streaming
requests and replies) and both async and sync handlers: our servers register only async ones today
(the node's NodeHealth, the store's grpc_health.aio), but grpc_health's own HealthServicer is sync
and an aio server runs such handlers in its threads.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class Undecodable:
    """What a request's bytes became when they did not parse."""

    error: str


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except Exception as exc:  # DecodeError, and anything a custom deserializer raises
            return Undecodable(f"{type(exc).__name__}: {exc}")

    return decode


def _detail(method: str, bad: Undecodable) -> str:
    # the method's input type is not known here; the parser's message names it
    return f"request to {method} is not a valid message ({bad.error})"


def _wrap_unary_request(behavior: Callable[..., Any], method: str, streaming_reply: bool) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def agen(request: Any, context: Any) -> Any:
            if isinstance(request, Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _detail(method, request))
            async for reply in behavior(request, context):
                yield reply

        return agen
    if inspect.iscoroutinefunction(behavior):

        async def coro(request: Any, context: Any) -> Any:
            if isinstance(request, Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _detail(method, request))
            return await behavior(request, context)

        return coro
    if streaming_reply:  # a sync generator (or a function returning an iterator), run in a thread

        def gen(request: Any, context: Any) -> Any:
            if isinstance(request, Undecodable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, _detail(method, request))
                return
            yield from behavior(request, context)

        return gen

    def sync(request: Any, context: Any) -> Any:
        if isinstance(request, Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _detail(method, request))
            return None  # the server sees the abort and sends its status
        return behavior(request, context)

    return sync


def _wrap_stream_request(behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
    is_async = inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)

    if is_async:

        async def checked(requests: Any, context: Any) -> Any:
            async for request in requests:
                if isinstance(request, Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _detail(method, request))
                yield request

        if inspect.isasyncgenfunction(behavior):

            async def agen(requests: Any, context: Any) -> Any:
                async for reply in behavior(checked(requests, context), context):
                    yield reply

            return agen

        async def coro(requests: Any, context: Any) -> Any:
            return await behavior(checked(requests, context), context)

        return coro

    def checked_sync(requests: Any, context: Any) -> Any:
        for request in requests:
            if isinstance(request, Undecodable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, _detail(method, request))
                return
            yield request

    def sync(requests: Any, context: Any) -> Any:
        return behavior(checked_sync(requests, context), context)

    return sync


def guard_handler(handler: grpc.RpcMethodHandler | None, method: str) -> grpc.RpcMethodHandler | None:
    """The same handler, refusing undecodable requests with INVALID_ARGUMENT."""
    if handler is None or handler.request_deserializer is None:
        return handler
    decode = _tolerant(handler.request_deserializer)
    serialize = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_request(handler.unary_unary, method, False),
            request_deserializer=decode,
            response_serializer=serialize,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_unary_request(handler.unary_stream, method, True),
            request_deserializer=decode,
            response_serializer=serialize,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_stream_request(handler.stream_unary, method),
            request_deserializer=decode,
            response_serializer=serialize,
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream_request(handler.stream_stream, method),
            request_deserializer=decode,
            response_serializer=serialize,
        )
    return handler


class DecodeGuard(grpc.aio.ServerInterceptor):
    """Install on every server: undecodable requests get INVALID_ARGUMENT, not UNKNOWN and a traceback."""

    def __init__(self) -> None:
        # Servers hand out one handler object per method: wrap each once, not once per call.
        self._guarded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler | None]] = {}

    async def intercept_service(self, continuation: Callable[..., Any], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        cached = self._guarded.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = guard_handler(handler, method)
        if handler is not None and len(self._guarded) < 1024:  # unknown method names are not cached
            self._guarded[method] = (handler, guarded)
        return guarded
