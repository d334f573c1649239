//! Every route and method served has a rule, and every rule serves
//! something: gRPC methods from the compiled descriptor set of
//! `proto/guichet/v1`; REST routes from the gateway's OpenAPI document and
//! from the gateway's router code itself (`.route("…", get(…))` and
//! `.route_service("…", …)` in `gateway/src`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use guichet_access::policy::{self, Operation, TABLE};
use prost::Message;

/// The standard services the gateway answers itself, by their methods.
const STANDARD: &[(&str, &[&str])] = &[
    ("grpc.health.v1.Health", &["Check", "Watch"]),
    (
        "grpc.reflection.v1.ServerReflection",
        &["ServerReflectionInfo"],
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        &["ServerReflectionInfo"],
    ),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `guichet.v1.Desk` → its methods' full names, from the descriptor set.
fn proto_services() -> BTreeMap<String, BTreeSet<String>> {
    let set = prost_types::FileDescriptorSet::decode(guichet_proto::FILE_DESCRIPTOR_SET)
        .expect("the descriptor set decodes");
    let mut services = BTreeMap::new();
    for file in set.file {
        let package = file.package().to_string();
        for service in file.service {
            let name = format!("{package}.{}", service.name());
            let methods = service
                .method
                .iter()
                .map(|m| format!("{name}/{}", m.name()))
                .collect();
            services.insert(name, methods);
        }
    }
    assert!(
        services.len() >= 6,
        "the descriptor set lists {} services",
        services.len()
    );
    services
}

fn grpc_rules() -> BTreeSet<&'static str> {
    TABLE
        .iter()
        .filter_map(|r| match r.operation {
            Operation::Grpc { method } => Some(method),
            Operation::Rest { .. } => None,
        })
        .collect()
}

#[test]
fn every_grpc_method_in_the_protos_has_a_rule_and_every_grpc_rule_a_method() {
    let services = proto_services();
    let mut served: BTreeSet<String> = services.values().flatten().cloned().collect();
    for (service, methods) in STANDARD {
        served.extend(methods.iter().map(|m| format!("{service}/{m}")));
    }
    let missing: Vec<&String> = served
        .iter()
        .filter(|m| policy::grpc_method(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "gRPC methods without a rule: {missing:?}"
    );
    let stale: Vec<&str> = grpc_rules()
        .into_iter()
        .filter(|m| !served.contains(*m))
        .collect();
    assert!(stale.is_empty(), "rules for no gRPC method: {stale:?}");
}

#[test]
fn every_route_in_the_openapi_document_has_a_rule() {
    let text =
        std::fs::read_to_string(repo().join("gateway/openapi.json")).expect("gateway/openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let paths = doc["paths"].as_object().expect("paths");
    let mut missing = Vec::new();
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            if policy::rest(method, path).is_none() {
                missing.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(paths.len() > 30, "only {} paths documented", paths.len());
    assert!(
        missing.is_empty(),
        "documented routes without a rule: {missing:?}"
    );
}

/// What an operation's `security` in the OpenAPI document must say, from
/// its rule: no sign-in where anyone is admitted and an agent sees no more;
/// sign-in optional where anonymous callers get a public view or prove
/// they are the person (a secret link) and agents see more; a bearer token
/// otherwise; and the person's code (`personCode`) as one more way in where
/// the table admits a person with it.
fn security_of(rule: &policy::Rule) -> serde_json::Value {
    use guichet_access::Who;
    let has = |f: fn(&Who) -> bool| rule.grants.iter().any(|g| f(&g.who));
    let mut ways = Vec::new();
    if has(|w| matches!(w, Who::Anyone | Who::Person)) {
        ways.push(serde_json::json!({}));
    }
    if has(|w| matches!(w, Who::Role(_) | Who::Station)) {
        ways.push(serde_json::json!({"bearerAuth": []}));
    }
    if has(|w| *w == Who::PersonWithCode) {
        ways.push(serde_json::json!({"personCode": []}));
    }
    if ways == [serde_json::json!({})] {
        ways.clear();
    }
    serde_json::Value::Array(ways)
}

#[test]
fn the_openapi_document_says_the_sign_in_the_table_asks() {
    let text =
        std::fs::read_to_string(repo().join("gateway/openapi.json")).expect("gateway/openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let mut wrong = Vec::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for (method, op) in operations.as_object().expect("operations") {
            let Some(rule) = policy::rest(method, path) else {
                continue; // reported by the test above
            };
            let expected = security_of(rule);
            if op["security"] != expected {
                wrong.push(format!(
                    "{} {path}: security {} where the table asks {expected}",
                    method.to_uppercase(),
                    op["security"]
                ));
            }
        }
    }
    for rule in TABLE {
        // The persons' pages are HTML, not API: docs/pages.md describes them.
        if let Operation::Rest { method, path } = rule.operation
            && !policy::is_page(path)
            && !doc["paths"][path][method.as_str().to_lowercase()].is_object()
        {
            wrong.push(format!("{} {path}: not documented", method.as_str()));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn every_route_in_the_gateway_code_has_a_rule_and_every_rest_rule_a_route() {
    let mut found = Vec::new();
    for file in rust_files(&repo().join("gateway/src")) {
        let source = std::fs::read_to_string(&file).expect("a source file");
        for route in routes_in(&source) {
            found.push((file.clone(), route));
        }
    }
    assert!(
        found.len() > 30,
        "only {} routes found in gateway/src: if the router no longer reads \
         `.route(\"/path\", get(handler))`, teach routes_in the new form",
        found.len()
    );
    let services = proto_services();
    let standard: BTreeMap<&str, &[&str]> = STANDARD.iter().copied().collect();
    let mut missing = Vec::new();
    let mut served_rest = BTreeSet::new();
    for (file, route) in &found {
        if let Some(service) = route.grpc_service() {
            // A gRPC service behind one route: each of its methods needs a rule.
            let methods: Vec<String> = match (services.get(service), standard.get(service)) {
                (Some(methods), _) => methods.iter().cloned().collect(),
                (None, Some(methods)) => methods.iter().map(|m| format!("{service}/{m}")).collect(),
                (None, None) => {
                    missing.push(format!(
                        "{}: unknown gRPC service {service}",
                        file.display()
                    ));
                    continue;
                }
            };
            for m in methods {
                if policy::grpc_method(&m).is_none() {
                    missing.push(m);
                }
            }
            continue;
        }
        assert!(
            !route.methods.is_empty(),
            "{}: no method found for {}",
            file.display(),
            route.path
        );
        for method in &route.methods {
            served_rest.insert((method.to_uppercase(), route.path.clone()));
            if policy::rest(method, &route.path).is_none() {
                missing.push(format!("{} {}", method.to_uppercase(), route.path));
            }
        }
    }
    assert!(missing.is_empty(), "served without a rule: {missing:?}");
    let stale: Vec<String> = TABLE
        .iter()
        .filter_map(|r| match r.operation {
            Operation::Rest { method, path } => (!served_rest
                .contains(&(method.as_str().to_string(), path.to_string())))
            .then(|| format!("{} {path}", method.as_str())),
            Operation::Grpc { .. } => None,
        })
        .collect();
    assert!(stale.is_empty(), "rules for routes not served: {stale:?}");
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[derive(Debug)]
struct Route {
    path: String,
    /// `get`, `post`, ... for `.route`; empty for `.route_service`.
    methods: Vec<String>,
}

impl Route {
    /// `/guichet.v1.Desk/{method}` → `guichet.v1.Desk`.
    fn grpc_service(&self) -> Option<&str> {
        self.path
            .strip_prefix('/')?
            .strip_suffix("/{method}")
            .filter(|s| s.contains('.'))
    }
}

const METHOD_ROUTERS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `.route("/path", get(a).post(b))` and `.route_service("/path", svc)`
/// calls in `source`, their method routers read at the top level of the
/// second argument (so `post(h).layer(timeout(..))` is one POST).
fn routes_in(source: &str) -> Vec<Route> {
    let mut routes = Vec::new();
    for call in [".route(", ".route_service("] {
        let mut from = 0;
        while let Some(at) = source[from..].find(call) {
            let start = from + at + call.len();
            from = start;
            let args = balanced(&source[start..]);
            let (first, second) = split_top_level_comma(args);
            let first = first.trim();
            let path = first
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or_else(|| {
                    panic!("a route whose path is not a string literal: {first}; read it here")
                });
            let methods = if call == ".route(" {
                top_level_calls(second)
                    .into_iter()
                    .filter(|name| METHOD_ROUTERS.contains(&name.as_str()))
                    .collect()
            } else {
                Vec::new()
            };
            routes.push(Route {
                path: path.to_string(),
                methods,
            });
        }
    }
    routes
}

/// The text up to the `)` closing the call whose `(` came just before.
fn balanced(s: &str) -> &str {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => return &s[..i],
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    panic!("an unclosed route call")
}

fn split_top_level_comma(args: &str) -> (&str, &str) {
    let mut depth = 0usize;
    let mut in_string = false;
    for (i, c) in args.char_indices() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '(' | '[' | '{' | '<' => depth += 1,
            ')' | ']' | '}' | '>' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => return (&args[..i], &args[i + 1..]),
            _ => {}
        }
    }
    (args, "")
}

/// Names called at depth 0 of an expression: `get(a).post(b)` → get, post.
fn top_level_calls(expr: &str) -> Vec<String> {
    let mut calls = Vec::new();
    let mut depth = 0usize;
    let mut ident = String::new();
    for c in expr.chars() {
        match c {
            '(' => {
                if depth == 0 && !ident.is_empty() {
                    calls.push(std::mem::take(&mut ident));
                }
                depth += 1;
            }
            ')' => depth = depth.saturating_sub(1),
            c if c.is_alphanumeric() || c == '_' => ident.push(c),
            _ => ident.clear(),
        }
    }
    calls
}

#[test]
fn the_route_reader_reads_the_forms_the_router_uses() {
    let source = r#"
        Router::new()
            .route("/a", get(h::a))
            .route(
                "/b/{id}",
                post(h::b).layer::<_, Infallible>(timeout(T)),
            )
            .route("/c", get(h::c).post(h::d))
            .route_service("/grpc.health.v1.Health/{method}", health)
            .route_layer(timeout(t))
    "#;
    let routes = routes_in(source);
    let seen: Vec<(&str, Vec<&str>)> = routes
        .iter()
        .map(|r| {
            (
                r.path.as_str(),
                r.methods.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/a", vec!["get"]),
            ("/b/{id}", vec!["post"]),
            ("/c", vec!["get", "post"]),
            ("/grpc.health.v1.Health/{method}", vec![]),
        ]
    );
    assert_eq!(routes[3].grpc_service(), Some("grpc.health.v1.Health"));
}
