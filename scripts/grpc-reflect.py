#!/usr/bin/env python3
"""A small grpcurl for fiberlbd: list, describe and call through gRPC server reflection only.

grpcurl is a Go binary that Debian does not package; this tool does the same three things with
the official Python gRPC libraries (grpcio, grpcio-reflection, protobuf), learning every service
and message type from the server's reflection service -- no .proto files. The test suite uses it
as an independent reflection client (controlplane/tests/grpc_reflection.rs), and operators can
use it wherever grpcurl is not at hand. scripts/setup.sh installs its environment:

    /opt/fiberlb/test-venv/bin/python scripts/grpc-reflect.py --unix /run/fiberlb/fiberlbd.sock list
    ... describe fiberlb.v1.LoadBalancer
    ... call fiberlb.v1.LoadBalancerService/List '{"scope":{"org_id":"acme","project_id":"web"}}'

Exit status: 0 on success, 1 when the server cannot be reached or reflection cannot resolve a
name, 2 for bad usage (including request JSON that does not fit the message), and for an RPC
that fails 64 + the gRPC status code (grpcurl's convention), with `CODE_NAME: message` on stderr.
"""

import argparse
import os
import signal
import sys

try:
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
    from grpc_reflection.v1alpha import reflection_pb2
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )
except ImportError as e:
    sys.exit(
        f"grpc-reflect: {e}; run it with the Python environment scripts/setup.sh creates "
        "(/opt/fiberlb/test-venv/bin/python), or `pip install grpcio grpcio-reflection protobuf`"
    )

REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


class Failure(Exception):
    """A failure with the exit status to end with."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def rpc_failure(err, what):
    """Turns a grpc.RpcError into a Failure: `CODE_NAME: message`, exit 64 + code."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    status = 64 + code.value[0]
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = "is fiberlbd running and the path/address right? (TLS: does --cacert hold its CA?)"
        return Failure(f"{what}: UNAVAILABLE: {details}; {hint}", status)
    return Failure(f"{what}: {code.name}: {details}", status)


class ReflectionDatabase(ProtoReflectionDescriptorDatabase):
    """grpcio-reflection's descriptor database, speaking v1 or v1alpha.

    Upstream only speaks v1alpha; v1's messages are the same on the wire, so for v1 the stub is
    replaced by one on v1's method path (grpcio-reflection is pinned in scripts/setup.sh).
    """

    def __init__(self, channel, version):
        super().__init__(channel)
        if version == "v1":
            self._stub = _StubV1(channel)


class _StubV1:
    def __init__(self, channel):
        self.ServerReflectionInfo = channel.stream_stream(
            f"/{REFLECTION_V1}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )


class _AuthInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call (reflection included, like grpcurl -H)."""

    def __init__(self, token):
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, d):
        metadata = list(d.metadata or []) + [self._header]
        return d._replace(metadata=metadata) if hasattr(d, "_replace") else _Details(d, metadata)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


class _Details(grpc.ClientCallDetails):
    def __init__(self, d, metadata):
        self.method = d.method
        self.timeout = d.timeout
        self.metadata = metadata
        self.credentials = d.credentials
        self.wait_for_ready = getattr(d, "wait_for_ready", None)
        self.compression = getattr(d, "compression", None)


def open_channel(args):
    if args.unix:
        # gRPC C-core (>= 1.57) sends the %-encoded socket path as :authority, which fiberlbd's
        # HTTP/2 stack (hyperium/h2) rejects with RST_STREAM(PROTOCOL_ERROR); grpcurl and
        # grpc-go send "localhost" (grpc/grpc#38142, hyperium/h2#487).
        channel = grpc.insecure_channel(
            f"unix:{args.unix}", options=[("grpc.default_authority", "localhost")]
        )
    else:
        root = None
        if args.cacert:
            try:
                with open(args.cacert, "rb") as f:
                    root = f.read()
            except OSError as e:
                raise Failure(f"--cacert {args.cacert}: {e.strerror}", 2) from e
        options = []
        if args.servername:
            options.append(("grpc.ssl_target_name_override", args.servername))
        channel = grpc.secure_channel(
            args.addr, grpc.ssl_channel_credentials(root_certificates=root), options=options
        )
    if args.token:
        channel = grpc.intercept_channel(channel, _AuthInterceptor(args.token))
    return channel


class Client:
    def __init__(self, args):
        self.args = args
        self.channel = open_channel(args)
        self.version = None
        self.db = None
        self.pool = None
        self._services = None

    def services(self):
        """The server's services; picks the reflection version on first use (v1, else v1alpha)."""
        if self._services is not None:
            return self._services
        versions = ["v1", "v1alpha"] if self.args.reflection == "auto" else [self.args.reflection]
        last = None
        for v in versions:
            db = ReflectionDatabase(self.channel, v)
            try:
                self._services = sorted(db.get_services())
            except grpc.RpcError as e:
                last = e
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    continue
                raise rpc_failure(e, f"reflection ({v})") from e
            self.version, self.db = v, db
            self.pool = descriptor_pool.DescriptorPool(db)
            return self._services
        raise rpc_failure(last, "the server does not serve reflection " + " or ".join(versions))

    def find(self, symbol):
        """The descriptor named `symbol` (service, method, message or enum) and its kind."""
        self.services()
        symbol = symbol.lstrip(".")
        # One reflection lookup loads the symbol's file; the kind is then found in the file (the
        # pool's Find*ByName would each ask the server again and re-add the file on a miss).
        try:
            file = self.pool.FindFileContainingSymbol(symbol)
        except KeyError:
            file = None
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise rpc_failure(e, f"reflection ({self.version})") from e
            file = None
        found = file and _search_file(file, symbol)
        if not found:
            raise Failure(f"{symbol}: the server's reflection service does not know this symbol; "
                          "`list` shows the services")
        return found

    def method(self, name):
        """`pkg.Service/Method` or `pkg.Service.Method` to a method descriptor."""
        service, sep, method = name.lstrip("/").rpartition("/")
        if not sep:
            service, sep, method = name.rpartition(".")
        if not sep or not service or not method:
            raise Failure(f"{name}: expected a method as pkg.Service/Method", 2)
        kind, svc = self.find(service)
        if kind != "service":
            raise Failure(f"{service} is a {kind}, not a service", 2)
        m = svc.methods_by_name.get(method)
        if m is None:
            names = ", ".join(sorted(svc.methods_by_name))
            raise Failure(f"{service} has no method {method} (it has: {names})")
        return m


def _search_file(file, symbol):
    for svc in file.services_by_name.values():
        if svc.full_name == symbol:
            return "service", svc
        for m in svc.methods:
            if m.full_name == symbol:
                return "method", m
    enums = list(file.enum_types_by_name.values())
    messages = list(file.message_types_by_name.values())
    while messages:
        m = messages.pop()
        if m.full_name == symbol:
            return "message", m
        for f in m.fields:
            if f.full_name == symbol:
                return "field", f
        messages += m.nested_types
        enums += m.enum_types
    for e in enums:
        if e.full_name == symbol:
            return "enum", e
    return None


# ---------------------------------------------------------------- describe: proto-like text

_SCALARS = {
    v: k[len("TYPE_"):].lower()
    for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()
    if k not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")
}


def _type_name(f, nested_maps):
    if f.type in (f.TYPE_MESSAGE, f.TYPE_ENUM):
        name = f.type_name.lstrip(".")
        if name in nested_maps:
            key, value = nested_maps[name]
            return f"map<{_type_name(key, {})}, {_type_name(value, {})}>"
        return name
    return _SCALARS[f.type]


def render_message(m, prefix, indent=""):
    full = f"{prefix}.{m.name}" if prefix else m.name
    maps = {
        f"{full}.{n.name}": (n.field[0], n.field[1]) for n in m.nested_type if n.options.map_entry
    }
    lines = [f"{indent}message {m.name} {{"]
    inner = indent + "  "
    for n in m.nested_type:
        if not n.options.map_entry:
            lines += render_message(n, full, inner)
    for e in m.enum_type:
        lines += render_enum(e, inner)
    real_oneofs = {}
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            real_oneofs.setdefault(f.oneof_index, []).append(f)
    done = set()
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            if f.oneof_index in done:
                continue
            done.add(f.oneof_index)
            lines.append(f"{inner}oneof {m.oneof_decl[f.oneof_index].name} {{")
            for g in real_oneofs[f.oneof_index]:
                lines.append(f"{inner}  {_type_name(g, maps)} {g.name} = {g.number};")
            lines.append(f"{inner}}}")
            continue
        label = ""
        if f.proto3_optional:
            label = "optional "
        elif f.label == f.LABEL_REPEATED and f.type_name.lstrip(".") not in maps:
            label = "repeated "
        lines.append(f"{inner}{label}{_type_name(f, maps)} {f.name} = {f.number};")
    lines.append(f"{indent}}}")
    return lines


def render_enum(e, indent=""):
    lines = [f"{indent}enum {e.name} {{"]
    lines += [f"{indent}  {v.name} = {v.number};" for v in e.value]
    lines.append(f"{indent}}}")
    return lines


def render_method(m):
    req = ("stream " if m.client_streaming else "") + m.input_type.lstrip(".")
    resp = ("stream " if m.server_streaming else "") + m.output_type.lstrip(".")
    return f"rpc {m.name} ( {req} ) returns ( {resp} );"


def describe(client, symbol):
    kind, d = client.find(symbol)
    if kind == "field":
        raise Failure(f"{symbol} is a field: describe {d.containing_type.full_name}")
    if kind == "service":
        p = descriptor_pb2.ServiceDescriptorProto()
        d.CopyToProto(p)
        body = [f"service {p.name} {{"] + [f"  {render_method(m)}" for m in p.method] + ["}"]
    elif kind == "method":
        p = descriptor_pb2.ServiceDescriptorProto()
        d.containing_service.CopyToProto(p)
        body = [render_method(next(m for m in p.method if m.name == d.name))]
    elif kind == "message":
        p = descriptor_pb2.DescriptorProto()
        d.CopyToProto(p)
        prefix = d.full_name.rpartition(".")[0]
        body = render_message(p, prefix)
    else:
        p = descriptor_pb2.EnumDescriptorProto()
        d.CopyToProto(p)
        body = render_enum(p)
    print(f"{d.full_name} is {'an' if kind == 'enum' else 'a'} {kind}:")
    print("\n".join(body))


# ---------------------------------------------------------------- call


def call(client, method_name, request_json):
    m = client.method(method_name)
    if m.client_streaming or m.server_streaming:
        raise Failure(f"{m.full_name}: streaming methods are not supported", 2)
    request_cls = message_factory.GetMessageClass(m.input_type)
    response_cls = message_factory.GetMessageClass(m.output_type)
    if request_json == "@":
        request_json = sys.stdin.read()
    try:
        request = json_format.Parse(
            request_json or "{}", request_cls(), descriptor_pool=client.pool
        )
    except json_format.ParseError as e:
        raise Failure(f"request JSON does not fit {m.input_type.full_name}: {e}", 2) from e
    stub = client.channel.unary_unary(
        f"/{m.containing_service.full_name}/{m.name}",
        request_serializer=request_cls.SerializeToString,
        response_deserializer=response_cls.FromString,
    )
    try:
        reply = stub(request, timeout=client.args.timeout)
    except grpc.RpcError as e:
        raise rpc_failure(e, m.full_name) from e
    # Proto field names (as in the .proto and `fiberlbctl -o json`), zero values included.
    print(
        json_format.MessageToJson(
            reply,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
            descriptor_pool=client.pool,
            indent=2,
        )
    )


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="grpc-reflect",
        description="List, describe and call gRPC methods using server reflection only "
        "(a small grpcurl).",
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--unix", metavar="PATH",
                        help="Unix socket (plaintext), e.g. /run/fiberlb/fiberlbd.sock")
    target.add_argument("--addr", metavar="HOST:PORT", help="TCP address (TLS)")
    p.add_argument("--token", default=os.environ.get("FIBERLB_TOKEN") or None,
                   help="bearer token, sent as `authorization: Bearer TOKEN` "
                   "(default: $FIBERLB_TOKEN)")
    p.add_argument("--cacert", metavar="PEM", help="CA certificates to verify the server (TLS)")
    p.add_argument("--servername", help="TLS server name to verify instead of HOST")
    p.add_argument("--reflection", choices=["auto", "v1", "v1alpha"], default="auto",
                   help="reflection protocol (auto: v1, falling back to v1alpha)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="services, or the methods of SERVICE")
    ls.add_argument("service", nargs="?")
    ds = sub.add_parser("describe", help="a service, method, message or enum")
    ds.add_argument("symbol")
    cl = sub.add_parser("call", help="call METHOD (pkg.Service/Method) with a JSON request")
    cl.add_argument("method")
    cl.add_argument("json", nargs="?", default="{}",
                    help="request as JSON; @ reads stdin (default {})")
    args = p.parse_args(argv)
    # `... | head` ends quietly, as other command-line tools do.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    client = Client(args)
    try:
        if args.command == "list":
            if args.service:
                kind, svc = client.find(args.service)
                if kind != "service":
                    raise Failure(f"{args.service} is a {kind}, not a service", 2)
                for name in sorted(svc.methods_by_name):
                    print(f"{svc.full_name}.{name}")
            else:
                print("\n".join(client.services()))
        elif args.command == "describe":
            describe(client, args.symbol)
        else:
            call(client, args.method, args.json)
    except Failure as e:
        print(f"grpc-reflect: {e}", file=sys.stderr)
        return e.status
    except grpc.RpcError as e:
        f = rpc_failure(e, "reflection")
        print(f"grpc-reflect: {f}", file=sys.stderr)
        return f.status
    finally:
        client.channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
