"""A call-centre client built from Guichet's .proto files alone, with grpcio.

It shares nothing with the servers' Rust code: the stubs are generated here,
at run time, from proto/. Through the gateway it lists the services by
reflection, checks health, files on behalf of a caller, and checks that a
filing without the caller's consent is refused. It prints one JSON object.

    python3 call_centre.py HOST:PORT PROTO_DIR FILING_JSON

Needs: pip install grpcio grpcio-tools grpcio-reflection grpcio-health-checking
"""

import importlib
import json
import os
import sys
import tempfile
import uuid

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_tools import protoc


def generate(proto_dir: str, out: str) -> None:
    """Compiles every Guichet .proto into Python modules under `out`."""
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(
        os.path.join("guichet", "v1", f)
        for f in os.listdir(os.path.join(proto_dir, "guichet", "v1"))
        if f.endswith(".proto")
    )
    status = protoc.main(
        [
            "protoc",
            f"-I{proto_dir}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *files,
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed with {status}")


def enum_value(enum, suffix: str) -> int:
    """The enum value whose name ends with `suffix` (PROCEDURE_RENEWAL for 'renewal')."""
    for name, number in enum.items():
        if name.endswith("_" + suffix.upper()):
            return number
    raise KeyError(suffix)


def filing_message(dossier_pb2, body: dict):
    """The JSON example as a guichet.v1.Filing."""

    def date(text):
        y, m, d = (int(x) for x in text.split("-"))
        return dossier_pb2.CalendarDate(year=y, month=m, day=d)

    a = body["applicant"]
    c = body["contact"]
    f = dossier_pb2.Filing(
        procedure=enum_value(dossier_pb2.Procedure, body["procedure"]),
        motif=enum_value(dossier_pb2.Motif, body["motif"]),
        applicant=dossier_pb2.Applicant(
            family_name="Python-" + a["family_name"],
            given_names=a.get("given_names", ""),
            birth_date=date(a["birth_date"]),
            birth_place=a.get("birth_place", ""),
            nationality=a["nationality"],
            foreigner_number=a.get("foreigner_number", ""),
        ),
        contact=dossier_pb2.Contact(
            email=c.get("email", ""),
            phone=c.get("phone", ""),
            address=dossier_pb2.PostalAddress(**c["address"]),
            answer_channel=enum_value(dossier_pb2.AnswerChannel, c["answer_channel"]),
        ),
        idempotency_key=str(uuid.uuid4()),
    )
    t = body.get("current_title")
    if t:
        f.current_title.CopyFrom(
            dossier_pb2.CurrentTitle(
                kind=enum_value(dossier_pb2.TitleKind, t["kind"]),
                number=t["number"],
                expires_on=date(t["expires_on"]),
            )
        )
    for d in body.get("documents", []):
        f.documents.append(
            dossier_pb2.DocumentRef(
                kind=enum_value(dossier_pb2.DocumentKind, d["kind"]),
                sha256=d["sha256"],
                media_type=d["media_type"],
                size_bytes=d["size_bytes"],
                filename=d.get("filename", ""),
            )
        )
    return f


def main() -> None:
    address, proto_dir, filing_path = sys.argv[1:4]
    out = tempfile.mkdtemp(prefix="guichet-py-")
    generate(proto_dir, out)
    sys.path.insert(0, out)
    dossier_pb2 = importlib.import_module("guichet.v1.dossier_pb2")
    ccc_pb2 = importlib.import_module("guichet.v1.call_centre_pb2")
    ccc_grpc = importlib.import_module("guichet.v1.call_centre_pb2_grpc")

    channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=10)

    services = sorted(ProtoReflectionDescriptorDatabase(channel).get_services())

    status = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="guichet.v1.CallCentre"), timeout=5
    )
    health = health_pb2.HealthCheckResponse.ServingStatus.Name(status.status)

    with open(filing_path, encoding="utf-8") as f:
        body = json.load(f)
    stub = ccc_grpc.CallCentreStub(channel)
    # Call-centre software signs in as its client (client credentials) and
    # names the agent on the call.
    metadata = (
        ("authorization", os.environ["GUICHET_TOKEN"]),
        ("x-acting-agent", os.environ["GUICHET_ACTING_AGENT"]),
    )

    def file_on_behalf(call_id: str, consent_recorded: bool):
        return stub.FileOnBehalf(
            ccc_pb2.FileOnBehalfRequest(
                filing=filing_message(dossier_pb2, body),
                agent_id="python-agent",
                call_id=call_id,
                consent_recorded=consent_recorded,
            ),
            timeout=10,
            metadata=metadata,
        )

    answer = file_on_behalf("python-call-1", True)
    try:
        file_on_behalf("python-call-2", False)
        refused = {"code": "OK"}
    except grpc.RpcError as e:
        refused = {"code": e.code().name, "message": e.details()}

    print(
        json.dumps(
            {
                "services": services,
                "health": health,
                "reference": answer.receipt.reference,
                "created": answer.created,
                "refused": refused,
            }
        )
    )


if __name__ == "__main__":
    main()
