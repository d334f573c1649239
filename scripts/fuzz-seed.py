"""Seeds a running Guichet with real things for the fuzzer to find, and
writes a schemathesis configuration that offers their ids half of the time.

Without ids that exist, every route that reads or changes one thing answers
404 and the fuzzer never reaches the code behind it. This makes a site (over
gRPC, as desk software does), a report, dossiers, an appointment, a printed
form uploaded as a scanned batch, and points the path parameters at them.

    python3 fuzz-seed.py BASE_URL PROTO_DIR EXAMPLES_DIR OUT_TOML

Needs grpcio and grpcio-tools (installed by .ci/run).
"""

import datetime
import importlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import grpc
from grpc_tools import protoc


def generate(proto_dir: str, out: str) -> None:
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(
        os.path.join("guichet", "v1", f)
        for f in os.listdir(os.path.join(proto_dir, "guichet", "v1"))
        if f.endswith(".proto")
    )
    args = ["protoc", f"-I{proto_dir}", f"-I{well_known}", f"--python_out={out}",
            f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def call(base: str, method: str, path: str, body=None, headers=None, raw=None):
    """One REST call; (status, parsed JSON or bytes)."""
    headers = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if raw is not None:
        data, content_type = raw
        headers["content-type"] = content_type
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, content, kind = r.status, r.read(), r.headers.get("content-type", "")
            doc_id = r.headers.get("x-document-id")
    except urllib.error.HTTPError as e:
        status, content, kind, doc_id = e.code, e.read(), e.headers.get("content-type", ""), None
    if "json" in kind:
        return status, json.loads(content), doc_id
    return status, content, doc_id


def multipart(fields, files):
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    for name, filename, kind, content in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: {kind}\r\n\r\n").encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def next_working_day_at_nine() -> str:
    """09:00 Paris time, two weekdays from now (public holidays aside: the
    seed then has no appointment, and the fuzz still runs)."""
    day = datetime.date.today() + datetime.timedelta(days=2)
    while day.weekday() >= 5:
        day += datetime.timedelta(days=1)
    # Paris is UTC+1 in winter, UTC+2 in summer; the server checks the slot.
    for offset in ("+01:00", "+02:00"):
        yield f"{day.isoformat()}T09:00:00{offset}"


def open_report_and_site(channel, desk_pb2, desk_grpc, ccc_pb2, ccc_grpc, dossier_pb2) -> str:
    """A desk site open on weekdays, and a blocked-user report; the report's id."""
    site = desk_pb2.Site(
        id="59-lille", name="Préfecture du Nord, Lille", prefecture="59",
        kind=desk_pb2.SiteKind.Value("SITE_KIND_PREFECTURE"),
        opening_hours=[desk_pb2.OpeningHours(weekday=d, opens="08:30", closes="16:00")
                       for d in range(1, 6)],
        desks=4, slot_minutes=30, places_per_slot=4, places_for_reports=1,
    )
    desk_grpc.DeskStub(channel).UpsertSite(site, timeout=10)
    report = ccc_grpc.CallCentreStub(channel).OpenReport(
        ccc_pb2.OpenReportRequest(
            category=ccc_pb2.ReportCategory.Value(
                next(n for n in ccc_pb2.ReportCategory.keys() if not n.endswith("UNSPECIFIED"))),
            what_was_tried="the website refused my upload",
            family_name="Benali", given_names="Samira",
            contact=dossier_pb2.Contact(
                phone="+33612345678",
                address=dossier_pb2.PostalAddress(line1="12 rue Solférino",
                                                  postal_code="59000", city="Lille")),
            agent_id="fuzz-agent", call_id="fuzz-call", idempotency_key=str(uuid.uuid4()),
        ),
        timeout=10,
    )
    return report.id


def main() -> None:
    base, proto_dir, examples, out_path = sys.argv[1:5]
    host = base.split("://", 1)[1]
    gen = tempfile.mkdtemp(prefix="guichet-fuzz-")
    generate(proto_dir, gen)
    sys.path.insert(0, gen)
    desk_pb2 = importlib.import_module("guichet.v1.desk_pb2")
    desk_grpc = importlib.import_module("guichet.v1.desk_pb2_grpc")
    ccc_pb2 = importlib.import_module("guichet.v1.call_centre_pb2")
    ccc_grpc = importlib.import_module("guichet.v1.call_centre_pb2_grpc")
    dossier_pb2 = importlib.import_module("guichet.v1.dossier_pb2")

    channel = grpc.insecure_channel(host)
    grpc.channel_ready_future(channel).result(timeout=20)
    reports = []
    try:
        reports.append(open_report_and_site(channel, desk_pb2, desk_grpc, ccc_pb2, ccc_grpc,
                                            dossier_pb2))
    except grpc.RpcError as e:
        # The fuzz still runs; it reaches less behind the desk routes.
        print(f"seeding over gRPC failed: {e.code().name} {e.details()}", file=sys.stderr)

    references, birth_dates = [], []
    for name in sorted(os.listdir(examples)):
        with open(os.path.join(examples, name), encoding="utf-8") as f:
            body = json.load(f)
        status, receipt, _ = call(base, "POST", "/api/v1/dossiers", body,
                                  {"Idempotency-Key": str(uuid.uuid4())})
        if status == 201:
            references.append(receipt["reference"])
            birth_dates.append(body["applicant"]["birth_date"])

    appointments = []
    for starts_at in next_working_day_at_nine():
        status, a, _ = call(base, "POST", "/api/v1/appointments",
                            {"site_id": "59-lille", "starts_at": starts_at,
                             "person": {"family_name": "Benali", "phone": "+33612345678"}},
                            {"Idempotency-Key": str(uuid.uuid4())})
        if status == 201:
            appointments.append(a["id"])
            break

    batches, pages, envelopes = [], [], []
    status, pdf, form_id = call(base, "POST", "/api/v1/postal/forms",
                                {"procedure": "renewal",
                                 "prefill": {"family_name": "Benali", "given_names": "Samira"}})
    if status == 200:
        body = multipart(
            [("station_id", "station-59-1"), ("reception_date", datetime.date.today().isoformat()),
             ("postmark_date", "")],
            [("page", "form.pdf", "application/pdf", pdf)],
        )
        status, batch, _ = call(base, "POST", "/api/v1/postal/batches", raw=body)
        if status in (200, 201):
            batches.append(batch["batch_id"])
            pages.extend(p["sha256"] for p in batch["pages"])
            # Reading runs in the background: wait a little for the envelope.
            deadline = time.time() + 60
            while time.time() < deadline and not envelopes:
                _, b, _ = call(base, "GET", f"/api/v1/postal/batches/{batch['batch_id']}")
                envelopes.extend(e["id"] for e in b.get("envelopes", []))
                time.sleep(0.5)

    ids = {
        "reference": references,
        "birth_date": birth_dates,
        "appointment": appointments,
        "report": reports,
        "batch": batches,
        "envelope": envelopes,
        "page": pages,
        "site": ["59-lille"],
        "prefecture": ["59"],
    }
    lines = ["# Written by scripts/fuzz-seed.py: real ids, offered half of the time.", ""]
    for name, values in ids.items():
        if values:
            lines.append(f"[dictionaries.{name}]")
            lines.append("values = " + json.dumps(values))
            lines.append("")
    bindings = [
        (None, "path.reference", "reference"),
        (None, "query.birth_date", "birth_date"),
        (None, "path.site", "site"),
        (None, "query.prefecture", "prefecture"),
        (None, "path.sha256", "page"),
        ("^/api/v1/appointments/", "path.id", "appointment"),
        ("^/api/v1/reports/", "path.id", "report"),
        ("^/api/v1/postal/batches/", "path.id", "batch"),
        ("^/api/v1/postal/envelopes/", "path.id", "envelope"),
    ]
    top = [(key, d) for path, key, d in bindings if path is None and ids[d]]
    if top:
        lines.append("[parameters]")
        for key, d in top:
            lines.append(f'"{key}" = {{ dictionary = "{d}", probability = 0.5 }}')
        lines.append("")
    for path, key, d in bindings:
        if path is None or not ids[d]:
            continue
        lines.append("[[operations]]")
        lines.append(f'include-path-regex = "{path}"')
        lines.append(f'parameters = {{ "{key}" = {{ dictionary = "{d}", probability = 0.5 }} }}')
        lines.append("")
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(json.dumps({k: len(v) for k, v in ids.items()}))


if __name__ == "__main__":
    main()
