"""What the gateway advertises over gRPC, called: a client with no .proto
file at all, only what reflection gives it.

It lists the services by reflection (v1alpha, as grpcurl and grpcio ask),
builds each listed service's messages from the reflected descriptors, and
calls every read method (Get*/List*) with an empty request: an answer or a
refusal (INVALID_ARGUMENT, NOT_FOUND) both show the method is served; only
UNIMPLEMENTED would show an advertised method that is not. It asks the
health service about every listed service, and calls a method and services
the gateway does not serve. It shares nothing with the servers' code and
prints one JSON object.

    python3 reflection_sweep.py HOST:PORT

Needs: pip install grpcio grpcio-reflection
"""

import json
import os
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

READ_PREFIXES = ("Get", "List")


def identity(b: bytes) -> bytes:
    return b


# Signed in when GUICHET_TOKEN is set: an agent's bearer access token.
METADATA = (
    (("authorization", os.environ["GUICHET_TOKEN"]),)
    if os.environ.get("GUICHET_TOKEN")
    else ()
)


def call(channel, path: str, request_bytes: bytes, deserialize=identity):
    """One unary call; (code name, answer or None)."""
    stub = channel.unary_unary(
        path, request_serializer=identity, response_deserializer=deserialize
    )
    try:
        return "OK", stub(request_bytes, timeout=10, metadata=METADATA)
    except grpc.RpcError as e:
        return e.code().name, None


def main() -> None:
    address = sys.argv[1]
    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=10)

    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    pool = descriptor_pool.DescriptorPool(database)

    calls = {}
    unresolved = []
    for name in services:
        try:
            service = pool.FindServiceByName(name)
        except KeyError:
            unresolved.append(name)
            continue
        for method in service.methods:
            if not method.name.startswith(READ_PREFIXES):
                continue
            if method.client_streaming or method.server_streaming:
                continue
            request = message_factory.GetMessageClass(method.input_type)()
            reply = message_factory.GetMessageClass(method.output_type)
            code, _ = call(
                channel,
                f"/{name}/{method.name}",
                request.SerializeToString(),
                reply.FromString,
            )
            calls[f"{name}/{method.name}"] = code

    # Health, for every listed service and the server as a whole, built
    # from the reflected descriptors like everything else.
    health = {}
    check = pool.FindMethodByName("grpc.health.v1.Health.Check")
    request_class = message_factory.GetMessageClass(check.input_type)
    reply_class = message_factory.GetMessageClass(check.output_type)
    status_enum = reply_class.DESCRIPTOR.fields_by_name["status"].enum_type
    for name in ["", *services, "no.such.Service"]:
        code, reply = call(
            channel,
            "/grpc.health.v1.Health/Check",
            request_class(service=name).SerializeToString(),
            reply_class.FromString,
        )
        health[name] = (
            status_enum.values_by_number[reply.status].name if code == "OK" else code
        )

    unknown = {}
    for path in [
        "/guichet.v1.CallCentre/NoSuchMethod",
        "/guichet.v1.InstructionDesk/TakeNext",
        "/guichet.v1.InstructionReader/GetDossier",
        "/no.such.Service/GetThing",
    ]:
        code, _ = call(channel, path, b"")
        unknown[path] = code

    print(
        json.dumps(
            {
                "services": services,
                "unresolved": unresolved,
                "calls": calls,
                "health": health,
                "unknown": unknown,
            }
        )
    )


if __name__ == "__main__":
    main()
