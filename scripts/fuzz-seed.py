"""Seeds a running Guichet with real things for the fuzzer to find, and
writes two schemathesis configurations that offer their ids half of the time:
one for an anonymous caller, one for signed-in agents.

Without ids that exist, every route that reads or changes one thing answers
404 and the fuzzer never reaches the code behind it. This makes a site (over
gRPC, as desk software does), a report, dossiers, an appointment (and the
person's secret link to it), a printed form uploaded as a scanned batch, and
points the path parameters at them.

Every call signs in as the policy table asks (docs/access.md), with the
development issuer's tokens that `guichet up` writes in
`<data dir>/dev-tokens/<uid or client id>`: the call-centre software names
the agent it acts for in `x-acting-agent`, the scanning station uploads, the
mailroom operator prints. A site's opening hours are its prefecture's
supervisor's to set, and the gateway does not yet pass on gRPC calls judged
by prefecture: when it refuses, the site is set on the desk service's own
address (FUZZ_DESK_GRPC_ADDR, read from `guichet up`'s log), as on the
internal network.

The agents' configuration gives each route the token of an agent who may
call it: the mailroom operator for /postal, the supervisor of 59 for /admin,
the desk agent of 59 for appointments and reports, the instructor of 59 for
the rest.

    python3 fuzz-seed.py BASE_URL PROTO_DIR EXAMPLES_DIR TOKENS_DIR OUT_PREFIX

writes OUT_PREFIX.anonymous.toml and OUT_PREFIX.agents.toml. Needs grpcio
and grpcio-tools (installed by .ci/run).
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

# The development agents and machine clients `guichet up` writes tokens for.
AGENT_OF_PATH = [
    # (path regex, whose token): each route to an agent who may call it.
    ("^/api/v1/postal/", "mailroom-1"),
    ("^/api/v1/admin/", "supervisor-59"),
    ("^/api/v1/(appointments|reports|agent/reports)/", "desk-59"),
]
DEFAULT_AGENT = "instructor-59"


class Tokens:
    """The development tokens in one data folder."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self, name: str) -> str:
        path = os.path.join(self.folder, name)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise SystemExit(f"no development token {path} (is `guichet up` running without "
                             f"GUICHET_OIDC_ISSUER?): {e}")

    def bearer(self, name: str) -> dict:
        return {"Authorization": f"Bearer {self(name)}"}

    def metadata(self, name: str, acting: str | None = None) -> list:
        md = [("authorization", f"Bearer {self(name)}")]
        if acting:
            md.append(("x-acting-agent", acting))
        return md


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


def lille(desk_pb2):
    return desk_pb2.Site(
        id="59-lille", name="Préfecture du Nord, Lille", prefecture="59",
        kind=desk_pb2.SiteKind.Value("SITE_KIND_PREFECTURE"),
        opening_hours=[desk_pb2.OpeningHours(weekday=d, opens="08:30", closes="16:00")
                       for d in range(1, 6)],
        desks=4, slot_minutes=30, places_per_slot=4, places_for_reports=1,
    )


def set_up_site(channel, tokens, desk_pb2, desk_grpc) -> None:
    """A desk site open on weekdays, set by the supervisor of 59."""
    site = lille(desk_pb2)
    try:
        desk_grpc.DeskStub(channel).UpsertSite(
            site, timeout=10, metadata=tokens.metadata("supervisor-59"))
        return
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.PERMISSION_DENIED:
            raise
        inside = os.environ.get("FUZZ_DESK_GRPC_ADDR")
        if not inside:
            raise
    # Judged by prefecture, which the gateway does not do for gRPC yet: on
    # the desk service's own address, as on the internal network.
    with grpc.insecure_channel(inside) as direct:
        desk_grpc.DeskStub(direct).UpsertSite(site, timeout=10)


def open_report(channel, tokens, ccc_pb2, ccc_grpc, dossier_pb2) -> str:
    """A blocked-user report, by the call-centre software for agent ccc-1; its id."""
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
            agent_id="ccc-1", call_id="fuzz-call", idempotency_key=str(uuid.uuid4()),
        ),
        timeout=10,
        metadata=tokens.metadata("guichet-ccc-software", acting="ccc-1"),
    )
    return report.id


def own_cases(base, tokens, references) -> list:
    """The dossiers of prefecture 59, once instruction has them, the first
    one taken by the instructor of 59: what the case routes can act on."""
    instructor = tokens.bearer(DEFAULT_AGENT)
    deadline = time.time() + 30
    while True:
        # 404 until instruction has consumed the filing; then 200 for 59's,
        # 403 for another prefecture's.
        seen = {r: call(base, "GET", f"/api/v1/agent/dossiers/{r}", headers=instructor)[0]
                for r in references}
        if 404 not in seen.values() or time.time() > deadline:
            break
        time.sleep(0.5)
    cases = [r for r, status in seen.items() if status == 200]
    status, case, _ = call(base, "POST", "/api/v1/agent/queue/next", {"prefecture": "59"},
                           instructor)
    if status == 200:
        held = case["dossier"]["reference"]
        cases = [held] + [c for c in cases if c != held]
    else:
        print(f"taking a case failed: {status} {case!r:.300}", file=sys.stderr)
    return cases


def toml_config(ids: dict, secrets: list, headers: list) -> str:
    """A schemathesis configuration: real ids offered half of the time, and
    `headers` as (path regex or None for every route, header dict)."""
    lines = ["# Written by scripts/fuzz-seed.py: real ids, offered half of the time.", ""]
    # Top-level keys come before the first table.
    for path, h in headers:
        if path is None:
            lines.append("headers = " + inline(h))
            lines.append("")
    for name, values in ids.items():
        if values:
            lines.append(f"[dictionaries.{name}]")
            lines.append("values = " + json.dumps(values))
            lines.append("")
    if secrets:
        lines.append("[dictionaries.secret]")
        lines.append("values = " + json.dumps(secrets))
        lines.append("")
    bindings = [
        (None, "path.reference", "reference"),
        (None, "query.birth_date", "birth_date"),
        (None, "path.site", "site"),
        (None, "query.prefecture", "prefecture"),
        (None, "path.prefecture", "prefecture"),
        (None, "path.uid", "uid"),
        (None, "path.sha256", "page"),
        ("^/api/v1/agent/dossiers/", "path.reference", "case"),
        ("^/api/v1/appointments/", "path.id", "appointment"),
        ("^/api/v1/appointments/", "header.X-Link-Secret", "secret"),
        ("^/api/v1/(reports|agent/reports)/", "path.id", "report"),
        ("^/api/v1/postal/batches/", "path.id", "batch"),
        ("^/api/v1/postal/envelopes/", "path.id", "envelope"),
    ]
    known = dict(ids, secret=secrets)
    top = [(key, d) for path, key, d in bindings if path is None and known.get(d)]
    if top:
        lines.append("[parameters]")
        for key, d in top:
            lines.append(f'"{key}" = {{ dictionary = "{d}", probability = 0.5 }}')
        lines.append("")
    # One block per path: of the blocks that match a route, the first to set
    # an option decides it, so each path's parameters go in one block, and
    # each route's headers in one other.
    per_path = {}
    for path, key, d in bindings:
        if path is not None and known.get(d):
            per_path.setdefault(path, []).append(
                f'"{key}" = {{ dictionary = "{d}", probability = 0.5 }}')
    for path, params in per_path.items():
        lines.append("[[operations]]")
        lines.append(f'include-path-regex = "{path}"')
        lines.append("parameters = { " + ", ".join(params) + " }")
        lines.append("")
    for path, h in headers:
        if path is not None:
            lines.append("[[operations]]")
            lines.append(f'include-path-regex = "{path}"')
            lines.append("headers = " + inline(h))
            lines.append("")
    return "\n".join(lines)


def inline(headers: dict) -> str:
    return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in headers.items()) + " }"


def main() -> None:
    base, proto_dir, examples, tokens_dir, out_prefix = sys.argv[1:6]
    tokens = Tokens(tokens_dir)
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
    # The fuzz still runs when a seeding call fails; it reaches less behind
    # the routes concerned.
    try:
        set_up_site(channel, tokens, desk_pb2, desk_grpc)
    except grpc.RpcError as e:
        print(f"setting up a site failed: {e.code().name} {e.details()}", file=sys.stderr)
    try:
        reports.append(open_report(channel, tokens, ccc_pb2, ccc_grpc, dossier_pb2))
    except grpc.RpcError as e:
        print(f"opening a report failed: {e.code().name} {e.details()}", file=sys.stderr)

    # Filing and booking online need no account.
    references, birth_dates = [], []
    for name in sorted(os.listdir(examples)):
        with open(os.path.join(examples, name), encoding="utf-8") as f:
            body = json.load(f)
        status, receipt, _ = call(base, "POST", "/api/v1/dossiers", body,
                                  {"Idempotency-Key": str(uuid.uuid4())})
        if status == 201:
            references.append(receipt["reference"])
            birth_dates.append(body["applicant"]["birth_date"])

    cases = own_cases(base, tokens, references)

    appointments, secrets = [], []
    for starts_at in next_working_day_at_nine():
        status, a, _ = call(base, "POST", "/api/v1/appointments",
                            {"site_id": "59-lille", "starts_at": starts_at,
                             "person": {"family_name": "Benali", "phone": "+33612345678"}},
                            {"Idempotency-Key": str(uuid.uuid4())})
        if status == 201:
            appointments.append(a["id"])
            if a.get("secret"):
                secrets.append(a["secret"])
            break

    # The mailroom prints a form; a scanning station uploads it scanned.
    mailroom = tokens.bearer("mailroom-1")
    batches, pages, envelopes = [], [], []
    status, pdf, form_id = call(base, "POST", "/api/v1/postal/forms",
                                {"procedure": "renewal",
                                 "prefill": {"family_name": "Benali", "given_names": "Samira"}},
                                mailroom)
    if status != 200:
        print(f"printing a form failed: {status} {pdf!r:.300}", file=sys.stderr)
    else:
        body = multipart(
            [("station_id", "station-59-1"), ("reception_date", datetime.date.today().isoformat()),
             ("postmark_date", "")],
            [("page", "form.pdf", "application/pdf", pdf)],
        )
        status, batch, _ = call(base, "POST", "/api/v1/postal/batches", raw=body,
                                headers=tokens.bearer("guichet-scanner-1"))
        if status not in (200, 201):
            print(f"uploading a batch failed: {status} {batch!r:.300}", file=sys.stderr)
        else:
            batches.append(batch["batch_id"])
            pages.extend(p["sha256"] for p in batch["pages"])
            # Reading runs in the background: wait a little for the envelope.
            deadline = time.time() + 60
            while time.time() < deadline and not envelopes:
                _, b, _ = call(base, "GET", f"/api/v1/postal/batches/{batch['batch_id']}",
                               headers=mailroom)
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
        "case": cases,
        # A grant changed by the fuzzer must not be one the other routes'
        # agents rely on.
        "uid": ["fuzz-agent-1"],
    }
    anonymous = toml_config(ids, secrets, [])
    agents = toml_config(
        ids, secrets,
        [(None, tokens.bearer(DEFAULT_AGENT))]
        + [(path, tokens.bearer(who)) for path, who in AGENT_OF_PATH],
    )
    for kind, text in [("anonymous", anonymous), ("agents", agents)]:
        with open(f"{out_prefix}.{kind}.toml", "w", encoding="utf-8") as f:
            f.write(text)
    print(json.dumps({**{k: len(v) for k, v in ids.items()}, "secret": len(secrets)}))


if __name__ == "__main__":
    main()
