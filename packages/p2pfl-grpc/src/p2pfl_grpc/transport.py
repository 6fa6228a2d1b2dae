"""The ``grpc`` transport: nodes in separate processes or hosts, over gRPC (grpc.aio).

One gRPC server per node, and one channel per neighbour (each side dials the other, so
calls in both directions work and either side notices the other's failure). The protocol
is ``proto/node_service.proto``:

* **Handshake** exchanges node ids (identity, distinct from the address), advertised
  addresses and per-start *incarnations*; the callee issues a token the caller presents on
  every later call (``p2pfl-node``/``p2pfl-token`` metadata). With mutual TLS the caller's
  certificate common name must also equal the id it claims, and the channel to a peer
  checks that the peer's certificate names its node id (the TLS server name).
* **Watch** is a call each side keeps open on its channel to the other. The first one makes
  the caller a neighbour of the callee (which then dials back); it never carries data, so its
  failure — a closed TCP connection, or the channel's keepalive pings going unanswered — tells
  at once that the peer crashed or became unreachable (``failed=True``). No timers poll.
* **Send** streams one message in chunks (core's Envelope bytes, see :mod:`p2pfl_grpc.envelope`);
  the receiver checks the declared size against its limits before allocating and hands the
  message to the node only if its ``sender`` is the authenticated caller.
* **Leave** tells a neighbour that this node goes away cleanly (``failed=False``).

Sends to one peer are serialised (in order); sends to different peers are independent, so
a slow or dead peer delays only what is sent to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from p2pfl.communication.transport import (
    PeerUnavailableError,
    Transport,
    TransportError,
    TransportHandler,
    TransportOptions,
)
from p2pfl.wire.encoding import WireError
from p2pfl.wire.message import Message
from p2pfl_grpc.addresses import DEFAULT_LISTEN, AddressError, parse_address
from p2pfl_grpc.addresses import advertised_address as _advertised
from p2pfl_grpc.envelope import EnvelopeStream, decode_envelope
from p2pfl_grpc.proto import node_service_pb2 as pb
from p2pfl_grpc.security import Credentials, SecuritySettings
from p2pfl_grpc.streaming import MAX_CHUNK, MAX_FRAME, ByteBudget, ChunkError, Refused, frames, read_frame

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
SERVICE = "p2pfl.grpc.v1.NodeService"
MAX_PENDING = 1024  # handshakes not yet followed by a Watch (bounded: strangers cannot grow it)
MAX_FIELD_CHARS = 1024  # node ids, addresses, incarnations in handshakes
NODE_KEY, TOKEN_KEY = "p2pfl-node", "p2pfl-token"


def _describe(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details()}"


@dataclass(eq=False)
class _Peer:
    """A neighbour: where to reach it, how to authenticate to it, and its live state."""

    node_id: str
    address: str
    incarnation: str
    token: str  # what we present when calling it (issued by it)
    channel: grpc.aio.Channel
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # it has made us a neighbour, or it failed
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None  # why it is gone, if it failed
    announced: bool = False  # on_peer_connected was called
    watch: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class _Pending:
    address: str
    incarnation: str


class GrpcTransport(Transport):
    """Transport over gRPC; see the module documentation for the protocol.

    Args:
        node_id: this node's identity (with TLS, a DNS name matching its certificate).
        address: where to listen: ``host:port``, ``[v6]:port`` or ``unix:/path``; port 0 picks
            a free port (default ``127.0.0.1:0``).
        options: common transport options (``send_timeout`` bounds every send, ``connect_timeout``
            every handshake, ``limits`` what a received message may declare).
        advertise: the address peers dial, when it differs from ``address`` (NAT, containers,
            a wildcard bind); a missing port means the bound one.
        insecure: plaintext, only when explicitly true (a warning is logged).
        tls: ``{ca, cert, key | certs_dir, mutual}``; or give ``ca``, ``cert``, ``key``,
            ``certs_dir``, ``mutual`` as flat options (see :mod:`p2pfl_grpc.security`).
        chunk_size: bytes per streamed chunk (64 KiB – 4 MiB, default 1 MiB).
        keepalive_time: seconds between HTTP/2 keepalive pings on each connection.
        keepalive_timeout: seconds a ping may stay unanswered before the connection (and the
            peer) is declared failed. Pings are answered by gRPC's own threads, so a node busy
            training is not mistaken for a dead one.
        leave_timeout: seconds to wait for each neighbour to acknowledge a clean leave.
        max_receive_bytes: bytes of messages being received at once, all peers together
            (default: ``options.limits.max_message_bytes``); further senders wait.
    """

    name = "grpc"

    def __init__(
        self,
        node_id: str,
        address: str = "",
        options: TransportOptions | None = None,
        *,
        advertise: str | None = None,
        insecure: Any = False,
        tls: dict[str, Any] | None = None,
        ca: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        certs_dir: str | None = None,
        mutual: Any = None,
        chunk_size: int = 1 << 20,
        keepalive_time: float = 15.0,
        keepalive_timeout: float = 20.0,
        leave_timeout: float = 5.0,
        max_receive_bytes: int | None = None,
        **params: Any,
    ) -> None:
        if params:
            raise TypeError(f"grpc transport: unknown options {sorted(params)}")
        super().__init__(node_id, address or DEFAULT_LISTEN, options)
        self.security = SecuritySettings.from_params(
            node_id, insecure=insecure, tls=tls, ca=ca, cert=cert, key=key, certs_dir=certs_dir, mutual=mutual
        )
        self._bind = parse_address(self.listen_address)
        self._advertise = advertise
        if not 64 << 10 <= int(chunk_size) <= MAX_CHUNK:
            raise ValueError(f"chunk_size must be between 65536 and {MAX_CHUNK} bytes, got {chunk_size}")
        if float(keepalive_time) <= 0 or float(keepalive_timeout) <= 0:
            raise ValueError("keepalive_time and keepalive_timeout must be positive")
        self.chunk_size = int(chunk_size)
        self.keepalive_time = float(keepalive_time)
        self.keepalive_timeout = float(keepalive_timeout)
        self.leave_timeout = float(leave_timeout)
        self._budget = ByteBudget(int(max_receive_bytes or self.options.limits.max_message_bytes))
        self._state = "new"  # new → running → stopping → stopped
        self._address = ""
        self._handler: TransportHandler | None = None
        self._creds: Credentials | None = None
        self._server: grpc.aio.Server | None = None
        self._peers: dict[str, _Peer] = {}
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._secret = b""
        self._incarnation = ""
        #: ``async (name, args) -> result`` serving operator commands (set by ``p2pfl node``); None refuses them
        self.control: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None

    @classmethod
    def launch_experiment(cls, cfg: Mapping[str, Any], plugins: Any) -> dict[str, Any]:
        """Run an experiment with one OS process per node (``network.processes: true``)."""
        from p2pfl_grpc.launcher import launch_experiment

        return launch_experiment(cfg, plugins)

    # ------------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        return self._address

    async def start(self, handler: TransportHandler) -> str:
        if self._state != "new":
            raise TransportError(f"{self.node_id}: a transport starts once (state: {self._state})")
        self._creds = self.security.load(self.node_id)
        self._handler = handler
        self._secret = secrets.token_bytes(32)
        self._incarnation = secrets.token_hex(8)
        server = grpc.aio.server(options=self._server_options())
        server.add_generic_rpc_handlers((self._rpc_handlers(),))
        target = str(self._bind)
        credentials = self._creds.server()
        try:
            port = server.add_secure_port(target, credentials) if credentials else server.add_insecure_port(target)
        except RuntimeError as exc:
            raise TransportError(f"{self.node_id}: cannot listen on {target}: {exc}") from None
        if port == 0 and not self._bind.is_unix:
            raise TransportError(f"{self.node_id}: cannot listen on {target} (address in use or not available)")
        try:
            self._address = _advertised(self._bind.with_port(port), self._advertise)
        except AddressError as exc:
            raise TransportError(f"{self.node_id}: {exc}") from None
        await server.start()
        self._server = server
        self._state = "running"
        log.debug("%s: listening on %s, advertised as %s", self.node_id, target, self._address)
        return self._address

    async def stop(self) -> None:
        if self._state != "running":  # never started, already stopped, or stopping
            return
        self._state = "stopping"
        peers = list(self._peers.values())
        await asyncio.gather(*(self._leave(p, "stopped") for p in peers), return_exceptions=True)
        await self._shutdown(grace=min(self.leave_timeout, 1.0))

    async def abort(self) -> None:
        """Vanish without a goodbye, as a crashed process would (for tests of failure handling).

        The server cancels every call at once, so neighbours see their calls fail
        (``failed=True``), exactly as when the process is killed.
        """
        if self._state != "running":
            return
        self._state = "stopping"
        assert self._server is not None
        await self._server.stop(None)
        await self._shutdown(grace=None)

    async def _shutdown(self, grace: float | None) -> None:
        for peer in list(self._peers.values()):
            self._drop(peer, "stopped", failed=False, notify=False)
        self._pending.clear()
        if self._server is not None:
            await self._server.stop(grace)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._state = "stopped"

    def neighbors(self) -> list[str]:
        return sorted(p.node_id for p in self._peers.values() if p.announced)

    # ------------------------------------------------------------------ channels and calls

    def _server_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.so_reuseport", 0),  # a port in use is an error, not silently shared
            ("grpc.max_receive_message_length", MAX_FRAME),
            ("grpc.max_send_message_length", MAX_FRAME),
            ("grpc.keepalive_time_ms", int(self.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            # peers may ping as often as they are configured to: never answer pings with GOAWAY
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 0),
        ]

    def _channel(self, target: str, server_name: str | None) -> grpc.aio.Channel:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_FRAME),
            ("grpc.max_send_message_length", MAX_FRAME),
            ("grpc.keepalive_time_ms", int(self.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.use_local_subchannel_pool", 1),  # this peer's own connection, not shared in-process
        ]
        assert self._creds is not None
        credentials = self._creds.channel()
        if credentials is None:
            return grpc.aio.insecure_channel(target, options=options)
        if server_name:  # the peer's certificate must name its node id
            options.append(("grpc.ssl_target_name_override", server_name))
        return grpc.aio.secure_channel(target, credentials, options=options)

    @staticmethod
    def _method(channel: grpc.aio.Channel, kind: str, name: str, reply: Any) -> Any:
        factory = getattr(channel, kind)
        if name == "Send":  # chunks are framed by p2pfl_grpc.streaming, already bytes
            return factory(f"/{SERVICE}/{name}", request_serializer=None, response_deserializer=reply.FromString)
        return factory(f"/{SERVICE}/{name}", request_serializer=_serialize, response_deserializer=reply.FromString)

    def _metadata(self, peer: _Peer) -> tuple[tuple[str, str], ...]:
        return ((NODE_KEY, self.node_id), (TOKEN_KEY, peer.token))

    def _token(self, peer_id: str) -> str:
        """The token ``peer_id`` presents to us: stable for this start, so crossing handshakes agree."""
        return hmac.new(self._secret, peer_id.encode(), hashlib.sha256).hexdigest()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _require_running(self) -> None:
        if self._state != "running":
            raise TransportError(f"{self.node_id}: the transport is not running (state: {self._state})")

    # ------------------------------------------------------------------ peers

    def _add_peer(self, node_id: str, address: str, incarnation: str, token: str, channel: grpc.aio.Channel) -> _Peer:
        peer = _Peer(node_id, address, incarnation, token, channel)
        self._peers[node_id] = peer
        self._pending.pop(node_id, None)
        peer.watch = self._spawn(self._watch(peer))
        return peer

    def _announce(self, peer: _Peer) -> None:
        if not peer.announced and self._state == "running" and self._peers.get(peer.node_id) is peer:
            peer.announced = True
            assert self._handler is not None
            self._handler.on_peer_connected(peer.node_id, peer.address)

    def _drop(self, peer: _Peer, reason: str, failed: bool, notify: bool = True) -> None:
        """Forget ``peer`` (once), release its resources, and tell the node if it knew the peer."""
        if self._peers.get(peer.node_id) is not peer:
            return
        del self._peers[peer.node_id]
        if failed:
            peer.failure = reason
        peer.closed.set()
        peer.ready.set()  # wakes a connect() waiting for it; it reads peer.failure
        if peer.watch is not None and peer.watch is not asyncio.current_task():
            peer.watch.cancel()
        self._spawn(peer.channel.close())
        if notify and peer.announced and self._state == "running":
            log.info("%s: neighbour %s is gone: %s", self.node_id, peer.node_id, reason)
            assert self._handler is not None
            self._handler.on_peer_disconnected(peer.node_id, reason, failed)

    async def _watch(self, peer: _Peer) -> None:
        """Keep a Watch call open to ``peer``: its end is how we learn that the peer is gone."""
        request = pb.Attach(token=self._token(peer.node_id), incarnation=self._incarnation)
        try:
            call = self._method(peer.channel, "unary_stream", "Watch", pb.Event)(request, metadata=self._metadata(peer))
            async for event in call:
                if event.ready:
                    peer.ready.set()
            reason, failed = "closed the connection", False
        except grpc.aio.AioRpcError as exc:
            reason, failed = f"connection lost ({_describe(exc)})", True
        self._drop(peer, reason, failed)

    async def _await_ready(self, peer: _Peer) -> None:
        try:
            await asyncio.wait_for(peer.ready.wait(), self.options.connect_timeout)
        except asyncio.TimeoutError:
            self._drop(peer, "no answer to the connection", failed=True)
            raise PeerUnavailableError(
                f"{peer.node_id} at {peer.address} did not accept the connection within {self.options.connect_timeout}s"
            ) from None
        if peer.failure is not None or self._peers.get(peer.node_id) is not peer:
            raise PeerUnavailableError(f"{peer.node_id} at {peer.address}: {peer.failure or 'disconnected'}")

    async def connect(self, address: str) -> str:
        self._require_running()
        for peer in list(self._peers.values()):
            if peer.address == address:
                await self._await_ready(peer)
                return peer.node_id
        try:
            parsed = parse_address(address)
        except AddressError as exc:
            raise TransportError(str(exc)) from None
        target = str(parsed)
        # the first contact checks the certificate against the host dialed (a socket path is "localhost")
        channel = self._channel(target, server_name="localhost" if parsed.is_unix else None)
        hello = pb.Hello(
            version=PROTOCOL_VERSION, node_id=self.node_id, address=self._address, incarnation=self._incarnation
        )
        try:
            welcome = await self._method(channel, "unary_unary", "Handshake", pb.Welcome)(
                hello, timeout=self.options.connect_timeout
            )
        except grpc.aio.AioRpcError as exc:
            await channel.close()
            raise PeerUnavailableError(f"{self.node_id}: cannot connect to {address}: {_describe(exc)}") from None
        peer_id = welcome.node_id
        problem = self._check_welcome(welcome)
        if problem:
            await channel.close()
            raise TransportError(f"{self.node_id}: {address}: {problem}")
        existing = self._peers.get(peer_id)
        if existing is not None and existing.incarnation == welcome.incarnation:  # connected meanwhile
            await channel.close()
            await self._await_ready(existing)
            return peer_id
        if existing is not None:
            self._drop(existing, "restarted", failed=True)
        assert self._creds is not None
        if self._creds.tls:  # the long-lived channel verifies that the certificate names peer_id
            await channel.close()
            channel = self._channel(target, server_name=peer_id)
        peer = self._add_peer(peer_id, welcome.address, welcome.incarnation, welcome.token, channel)
        await self._await_ready(peer)
        self._announce(peer)
        return peer_id

    def _check_welcome(self, welcome: pb.Welcome) -> str | None:
        if welcome.version != PROTOCOL_VERSION:
            return f"speaks protocol version {welcome.version}, this node {PROTOCOL_VERSION}"
        if not welcome.node_id or not welcome.incarnation or not welcome.token:
            return "incomplete handshake answer"
        if welcome.node_id == self.node_id:
            return f"is this node itself (or another node with the id {self.node_id!r})"
        try:
            parse_address(welcome.address)
        except AddressError as exc:
            return f"advertises an invalid address: {exc}"
        return None

    async def disconnect(self, peer_id: str) -> None:
        peer = self._peers.get(peer_id)
        if peer is None:
            return
        await self._leave(peer, "disconnected")
        self._drop(peer, "disconnected", failed=False)

    async def _leave(self, peer: _Peer, reason: str) -> None:
        """Say goodbye; best effort (the peer may be going away too)."""
        try:
            await self._method(peer.channel, "unary_unary", "Leave", pb.Ack)(
                pb.Bye(reason=reason), metadata=self._metadata(peer), timeout=self.leave_timeout
            )
        except (grpc.aio.AioRpcError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            # grpc reports a call cancelled under it (its channel closed as the peer left at the
            # same moment) as CancelledError; only a cancellation of this task itself propagates
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

    # ------------------------------------------------------------------ sending

    async def send(self, peer_id: str, message: Message) -> None:
        peer = self._peers.get(peer_id)
        if peer is None or self._state != "running":
            raise PeerUnavailableError(f"{peer_id} is not a neighbour of {self.node_id}")
        await self._send_stream(peer, EnvelopeStream(message), message.describe())

    async def _send_stream(self, peer: _Peer, stream: EnvelopeStream | bytes, what: str) -> None:
        async with peer.send_lock:  # one message at a time per peer: in order, and no flooding
            if self._peers.get(peer.node_id) is not peer:
                raise PeerUnavailableError(f"{peer.node_id} is not a neighbour of {self.node_id}")
            call = self._method(peer.channel, "stream_unary", "Send", pb.Ack)
            try:
                ack = await call(self._frames(stream), metadata=self._metadata(peer), timeout=self.options.send_timeout)
            except grpc.aio.AioRpcError as exc:
                reason = f"send failed ({_describe(exc)})"
                self._drop(peer, reason, failed=True)
                raise PeerUnavailableError(f"{self.node_id} → {peer.node_id}: {reason}") from None
            self.bytes_sent += stream.size if isinstance(stream, EnvelopeStream) else len(stream)
            self.messages_sent += 1
        if not ack.accepted:
            log.warning("%s: %s refused %s: %s", self.node_id, peer.node_id, what, ack.reason)

    def _frames(self, stream: EnvelopeStream | bytes) -> Iterator[bytes]:
        if isinstance(stream, bytes):
            return frames(len(stream), iter([[memoryview(stream)]]))
        return frames(stream.size, stream.batches(self.chunk_size))

    async def send_raw(self, peer_id: str, data: bytes) -> None:
        """Send ``data`` as if it were an encoded message (for tests of malformed input)."""
        peer = self._peers.get(peer_id)
        if peer is None:
            raise PeerUnavailableError(f"{peer_id} is not a neighbour of {self.node_id}")
        await self._send_stream(peer, bytes(data), f"{len(data)} raw bytes")

    # ------------------------------------------------------------------ serving

    def _rpc_handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Handshake": grpc.unary_unary_rpc_method_handler(
                    self._on_handshake, request_deserializer=pb.Hello.FromString, response_serializer=_serialize
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self._on_watch, request_deserializer=pb.Attach.FromString, response_serializer=_serialize
                ),
                "Send": grpc.stream_unary_rpc_method_handler(
                    self._on_send, request_deserializer=None, response_serializer=_serialize
                ),
                "Leave": grpc.unary_unary_rpc_method_handler(
                    self._on_leave, request_deserializer=pb.Bye.FromString, response_serializer=_serialize
                ),
                "Control": grpc.unary_unary_rpc_method_handler(
                    self._on_control, request_deserializer=pb.Command.FromString, response_serializer=_serialize
                ),
            },
        )

    async def _check_certificate(self, context: grpc.aio.ServicerContext, claimed: str) -> None:
        assert self._creds is not None
        holder = self._creds.caller_identity(context)
        if holder is not None and holder != claimed:
            log.warning(
                "%s: refused a caller claiming to be %r with a certificate for %r", self.node_id, claimed, holder
            )
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"certificate is for {holder!r}, not {claimed!r}")

    async def _authenticate(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's node id, proven by its token (and its certificate under mutual TLS)."""
        metadata = dict(context.invocation_metadata() or ())
        caller, token = str(metadata.get(NODE_KEY, "")), str(metadata.get(TOKEN_KEY, ""))
        if self._state != "running":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node is stopping")
        if not caller or not hmac.compare_digest(token.encode(), self._token(caller).encode()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown caller: handshake first")
        await self._check_certificate(context, caller)
        return caller

    async def _on_handshake(self, hello: pb.Hello, context: grpc.aio.ServicerContext) -> pb.Welcome:
        if self._state != "running":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "node is stopping")
        if hello.version != PROTOCOL_VERSION:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"protocol version {PROTOCOL_VERSION} only")
        fields = (hello.node_id, hello.address, hello.incarnation)
        if not all(fields) or max(len(f) for f in fields) > MAX_FIELD_CHARS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node_id, address and incarnation are required")
        if hello.node_id == self.node_id:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"this node already has the id {self.node_id!r}")
        try:
            parse_address(hello.address)
        except AddressError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self._check_certificate(context, hello.node_id)
        peer = self._peers.get(hello.node_id)
        if peer is None or peer.incarnation != hello.incarnation:
            self._pending[hello.node_id] = _Pending(hello.address, hello.incarnation)
            self._pending.move_to_end(hello.node_id)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
        return pb.Welcome(
            version=PROTOCOL_VERSION,
            node_id=self.node_id,
            address=self._address,
            incarnation=self._incarnation,
            token=self._token(hello.node_id),
        )

    async def _on_watch(self, attach: pb.Attach, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.Event]:
        caller = await self._authenticate(context)
        peer = self._peers.get(caller)
        if peer is None or peer.incarnation != attach.incarnation:
            pending = self._pending.get(caller)
            if pending is None or pending.incarnation != attach.incarnation or not attach.token:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no handshake from this node")
                return
            if peer is not None:
                self._drop(peer, "restarted", failed=True)
            assert self._creds is not None
            channel = self._channel(str(parse_address(pending.address)), caller if self._creds.tls else None)
            peer = self._add_peer(caller, pending.address, pending.incarnation, attach.token, channel)
        self._announce(peer)
        yield pb.Event(ready=True)
        await peer.closed.wait()
        if peer.failure is not None:  # tell the caller we consider it failed (it sees failed=True too)
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details(peer.failure)

    async def _on_leave(self, bye: pb.Bye, context: grpc.aio.ServicerContext) -> pb.Ack:
        caller = await self._authenticate(context)
        peer = self._peers.get(caller)
        if peer is not None:
            self._drop(peer, f"left ({bye.reason[:200]})" if bye.reason else "left", failed=False)
        return pb.Ack(accepted=True)

    async def _on_control(self, command: pb.Command, context: grpc.aio.ServicerContext) -> pb.Reply:
        """An operator command; the TLS layer has already checked a mutual-TLS caller's certificate."""
        if self.control is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{self.node_id} takes no commands")
        assert self.control is not None and self._creds is not None
        try:
            args = json.loads(command.args_json or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            caller = self._creds.caller_identity(context) or context.peer()
            log.info("%s: command %r from %s", self.node_id, command.name[:80], caller)
            result = await self.control(command.name, args)
        except Exception as exc:  # reported to the operator, never fatal to the node
            return pb.Reply(ok=False, error=f"{type(exc).__name__}: {exc}")
        return pb.Reply(ok=True, result_json=json.dumps(result, default=str))

    async def _on_send(self, chunks: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> pb.Ack:
        caller = await self._authenticate(context)
        peer = self._peers.get(caller)
        if peer is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{caller} is not a neighbour of {self.node_id}")
        assert peer is not None
        try:
            message = await asyncio.wait_for(self._receive(chunks, caller), self.options.send_timeout)
        except Refused as exc:
            log.warning("%s: dropped a message from %s: %s", self.node_id, caller, exc)
            return pb.Ack(accepted=False, reason=str(exc))
        except asyncio.TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED, f"message not received within {self.options.send_timeout}s"
            )
        if message.sender != caller:  # one node cannot speak for another
            reason = f"sender field {message.sender[:80]!r} is not the caller {caller!r}"
            log.warning("%s: dropped %s: %s", self.node_id, message.describe()[:200], reason)
            return pb.Ack(accepted=False, reason=reason)
        if self._peers.get(caller) is peer and self._state == "running":
            self._announce(peer)
            assert self._handler is not None
            self._handler.on_message(message)
        return pb.Ack(accepted=True)

    async def _receive(self, chunks: AsyncIterator[bytes], caller: str) -> Message:
        """Reassemble one message (size checked before allocating) and decode it in place."""
        limits = self.options.limits
        buf: bytearray | None = None
        pos = 0
        reserved = 0
        try:
            async for raw in chunks:
                try:
                    total, data = read_frame(raw, first=buf is None)
                except ChunkError as exc:
                    raise Refused(str(exc)) from None
                if buf is None:
                    if total > limits.max_message_bytes:
                        raise Refused(f"message of {total} bytes exceeds the limit of {limits.max_message_bytes}")
                    reserved = await self._budget.acquire(total)
                    buf = bytearray(total)
                if len(data) > len(buf) - pos:
                    raise Refused(f"more bytes than the {len(buf)} declared")
                buf[pos : pos + len(data)] = data
                pos += len(data)
            if buf is None or pos != len(buf):
                raise Refused(f"message ended after {pos} of {len(buf) if buf is not None else '?'} bytes")
            try:
                return decode_envelope(buf, limits)
            except WireError as exc:
                raise Refused(f"malformed message: {exc}") from None
        finally:
            self._budget.release(reserved)


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()
