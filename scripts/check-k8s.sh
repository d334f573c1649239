#!/usr/bin/env bash
# Checks the Kubernetes manifests of infra/k8s offline, with no cluster:
#
# 1. every manifest (secrets.example.yaml included) against the OpenAPI
#    schemas of one Kubernetes version, bundled with the PyPI package
#    kubernetes-validate, in strict mode (an unknown field fails); a kind or
#    apiVersion it has no schema for fails too (the tool only warns);
# 2. kustomization.yaml's resources name exactly the manifests of the folder
#    (kustomize is not needed: the list is read as YAML);
# 3. what the schemas cannot say: every Deployment has readiness and
#    liveness probes, CPU and memory requests and limits, the security
#    settings, at least 2 replicas, a Service and a PodDisruptionBudget that
#    select its pods, and a HorizontalPodAutoscaler; every Secret, key and
#    ConfigMap key a pod reads exists in secrets.example.yaml or config.yaml;
#    every GUICHET_ variable set is one the README documents; every service
#    URL names a Service of the base on one of its ports.
#
# Exits non-zero on any failure. K8S_VERSION=1.xx.0 to check against another
# version (one that kubernetes-validate bundles).
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-1.33.0}
DIR=infra/k8s

python3 -c 'import kubernetes_validate' 2>/dev/null \
    || python3 -m pip install -q kubernetes-validate

manifests=()
for f in "$DIR"/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done

echo "== schemas: Kubernetes $K8S_VERSION, strict (kubernetes-validate $(python3 -m kubernetes_validate --version))"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
python3 -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "${manifests[@]}" >"$out" 2>&1
status=$?
set -e
cat "$out"
if [ "$status" -ne 0 ] || grep -Eq '^(WARN|ERROR|FATAL)' "$out"; then
    echo "check-k8s: schema validation failed" >&2
    exit 1
fi
echo "${#manifests[@]} files valid"

echo "== kustomization, and what the schemas do not check"
python3 - "$DIR" <<'PY'
import os, re, sys
from urllib.parse import urlparse
import yaml

d = sys.argv[1]
errors = []
def fail(msg):
    errors.append(msg)

def load(name):
    with open(os.path.join(d, name)) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]

# --- kustomization.yaml lists exactly the manifests present -------------------
k = load("kustomization.yaml")[0]
listed = k.get("resources", [])
not_resources = {"kustomization.yaml", "secrets.example.yaml", "README.md"}
present = sorted(f for f in os.listdir(d) if f not in not_resources)
if len(listed) != len(set(listed)):
    fail(f"kustomization.yaml: a resource is listed twice: {listed}")
for f in sorted(set(present) - set(listed)):
    fail(f"kustomization.yaml: {f} is in {d} but not in resources")
for f in sorted(set(listed) - set(present)):
    fail(f"kustomization.yaml: {f} is in resources but not in {d}")
if "secrets.example.yaml" in listed:
    fail("kustomization.yaml: secrets.example.yaml must never be applied")
if k.get("namespace") != "guichet":
    fail("kustomization.yaml: namespace is not guichet")

docs = []
for f in listed:
    if f.endswith(".yaml") and f in present:
        docs += [(f, doc) for doc in load(f)]
secrets_docs = load("secrets.example.yaml")

def of_kind(kind):
    return [(f, doc) for f, doc in docs if doc.get("kind") == kind]

def name(doc):
    return doc["metadata"]["name"]

namespaces = [name(doc) for _, doc in of_kind("Namespace")]
if namespaces != ["guichet"]:
    fail(f"want one Namespace guichet, have {namespaces}")
for doc in secrets_docs:
    if doc.get("kind") != "Secret":
        fail(f"secrets.example.yaml: {doc.get('kind')} is not a Secret")
    elif doc["metadata"].get("namespace") != "guichet":
        fail(f"secrets.example.yaml: Secret {name(doc)} is not in namespace guichet")

secret_keys = {name(doc): set(doc.get("stringData", {})) | set(doc.get("data", {}))
               for doc in secrets_docs if doc.get("kind") == "Secret"}
config_keys = {}
for _, doc in of_kind("ConfigMap"):
    config_keys[name(doc)] = set(doc.get("data", {}))

# GUICHET_ variables the README documents (its configuration table).
with open("README.md") as f:
    readme = f.read()
documented = set(re.findall(r"`(GUICHET_[A-Z0-9_]+)`", readme))
services_of_bus = ["INSTRUCTION", "INTAKE_WEB", "INTAKE_CCC", "INTAKE_PAN", "INTAKE_POSTAL", "NOTIFIER"]
for s in services_of_bus:
    documented |= {f"GUICHET_AMQP_USER_{s}", f"GUICHET_AMQP_PASSWORD_{s}"}
# Written as `A` / `B` in one cell.
for a, b in re.findall(r"`(GUICHET_[A-Z0-9_]+)` / `(GUICHET_[A-Z0-9_]+)`", readme):
    documented |= {a, b}

def check_variable(where, var):
    if var.startswith("GUICHET_") and var not in documented:
        fail(f"{where}: {var} is not a variable the README documents")

for cm, keys in config_keys.items():
    for key in keys:
        check_variable(f"ConfigMap {cm}", key)

def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

services = of_kind("Service")
pdbs = of_kind("PodDisruptionBudget")
hpas = of_kind("HorizontalPodAutoscaler")
deployments = of_kind("Deployment")
deployment_names = {name(doc) for _, doc in deployments}
want = {"gateway", "intake-web", "intake-ccc", "intake-pan", "intake-postal", "instruction", "notifier"}
if deployment_names != want:
    fail(f"Deployments: want {sorted(want)}, have {sorted(deployment_names)}")
consumers = {"instruction", "notifier"}

for f, dep in deployments:
    n = name(dep)
    where = f"{f}: Deployment {n}"
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    if not matches(spec["selector"].get("matchLabels"), labels):
        fail(f"{where}: its selector does not select its own pods")
    if spec.get("replicas", 1) < 2:
        fail(f"{where}: fewer than 2 replicas")
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or not isinstance(psc.get("runAsUser"), int) or psc["runAsUser"] == 0:
        fail(f"{where}: the pod must run as a non-root numeric user")
    ports = set()
    for c in pod["containers"]:
        cw = f"{where}, container {c['name']}"
        if not c.get("image", "").startswith("guichet:"):
            fail(f"{cw}: image {c.get('image')} is not guichet:<tag>")
        if c.get("args", [])[:2] != ["serve", n]:
            fail(f"{cw}: args {c.get('args')} are not [serve, {n}]")
        for probe in ("readinessProbe", "livenessProbe"):
            if not c.get(probe):
                fail(f"{cw}: no {probe}")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    fail(f"{cw}: no {r} {kind[:-1]}")
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{cw}: allowPrivilegeEscalation is not false")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{cw}: readOnlyRootFilesystem is not true")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            fail(f"{cw}: capabilities do not drop ALL")
        ports |= {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c.get(probe) or {}
            port = (p.get("grpc") or p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
            if p and port not in ports:
                fail(f"{cw}: {probe} port {port} is not a port of the container")
        for ref in c.get("envFrom", []):
            cm = ref.get("configMapRef", {}).get("name")
            if cm and cm not in config_keys:
                fail(f"{cw}: envFrom ConfigMap {cm} is not in the base")
            if "secretRef" in ref and ref["secretRef"]["name"] not in secret_keys:
                fail(f"{cw}: envFrom Secret {ref['secretRef']['name']} is not in secrets.example.yaml")
        for e in c.get("env", []):
            check_variable(cw, e["name"])
            src = e.get("valueFrom", {})
            if "secretKeyRef" in src:
                r = src["secretKeyRef"]
                if r["key"] not in secret_keys.get(r["name"], set()):
                    fail(f"{cw}: {e['name']} reads Secret {r['name']} key {r['key']}, not in secrets.example.yaml")
            if "configMapKeyRef" in src:
                r = src["configMapKeyRef"]
                if r["key"] not in config_keys.get(r["name"], set()):
                    fail(f"{cw}: {e['name']} reads ConfigMap {r['name']} key {r['key']}, not in the base")
    for v in pod.get("volumes", []):
        if "secret" in v:
            s = v["secret"]
            if s["secretName"] not in secret_keys:
                fail(f"{where}: volume {v['name']}: Secret {s['secretName']} is not in secrets.example.yaml")
            for item in s.get("items", []):
                if item["key"] not in secret_keys.get(s["secretName"], set()):
                    fail(f"{where}: volume {v['name']}: key {item['key']} is not in Secret {s['secretName']}")
    svc = [s for _, s in services if matches(s["spec"].get("selector"), labels)]
    if len(svc) != 1:
        fail(f"{where}: {len(svc)} Services select its pods (want 1)")
    else:
        for p in svc[0]["spec"]["ports"]:
            if p.get("targetPort", p["port"]) not in ports:
                fail(f"{where}: Service {name(svc[0])} port {p['port']} targets {p.get('targetPort')}, not a container port")
        if name(svc[0]) != n:
            fail(f"{where}: its Service is called {name(svc[0])}")
    pdb = [p for _, p in pdbs if matches(p["spec"]["selector"].get("matchLabels"), labels)]
    if len(pdb) != 1:
        fail(f"{where}: {len(pdb)} PodDisruptionBudgets select its pods (want 1)")
    elif pdb[0]["spec"].get("minAvailable") != 1:
        fail(f"{where}: its PodDisruptionBudget's minAvailable is not 1")
    hpa = [h for _, h in hpas if h["spec"]["scaleTargetRef"].get("name") == n
           and h["spec"]["scaleTargetRef"].get("kind") == "Deployment"]
    if len(hpa) != 1:
        fail(f"{where}: {len(hpa)} HorizontalPodAutoscalers scale it (want 1)")
    else:
        kinds = {m["type"] for m in hpa[0]["spec"].get("metrics", [])}
        wanted = "External" if n in consumers else "Resource"
        if kinds != {wanted}:
            fail(f"{where}: its HPA scales on {sorted(kinds)}, want {wanted}")
        if hpa[0]["spec"].get("minReplicas", 1) < 2:
            fail(f"{where}: its HPA's minReplicas is under 2 (its PDB would block every eviction)")

# Every service URL of the ConfigMap names a Service of the base, on one of its ports.
service_ports = {name(s): {p["port"] for p in s["spec"]["ports"]} for _, s in services}
for cm in of_kind("ConfigMap"):
    for key, value in cm[1].get("data", {}).items():
        if re.fullmatch(r"GUICHET_[A-Z_]+_URL", key) and key not in ("GUICHET_AMQP_URL", "GUICHET_PUBLIC_URL", "GUICHET_SMS_URL", "GUICHET_SMTP_URL"):
            # dns:///host:port (gRPC's naming, every address of a headless
            # Service) or http://host:port.
            u = urlparse(value.replace("dns:///", "http://", 1))
            if u.hostname not in service_ports or u.port not in service_ports[u.hostname]:
                fail(f"ConfigMap {name(cm[1])}: {key}={value} is not a Service of the base and one of its ports")
            elif value.startswith("dns:///") and next(s for _, s in services if name(s) == u.hostname)["spec"].get("clusterIP") != "None":
                fail(f"ConfigMap {name(cm[1])}: {key}={value} looks up a Service that is not headless (one address, one pod)")

for e in errors:
    print("FAIL", e)
if errors:
    sys.exit(1)
print(f"{len(deployments)} Deployments, {len(services)} Services, {len(pdbs)} PodDisruptionBudgets, "
      f"{len(hpas)} HorizontalPodAutoscalers, {len(secret_keys)} example Secrets: consistent")
PY
echo "check-k8s: ok"
