//! gRPC through the gateway, as a client that knows nothing but the
//! gateway's address sees it: reflection lists exactly the services it can
//! call, every read method listed answers (none is `UNIMPLEMENTED`), health
//! tells the state of each service behind, and a call to anything else is a
//! gRPC `UNIMPLEMENTED`, not an HTTP 404. The client is Python
//! (`tests/clients/reflection_sweep.py`), sharing no code with the servers.

use crate::common;

use common::Backend;
use serde_json::Value;

/// Runs the Python sweep against `base` (`http://host:port`).
async fn sweep(base: &str) -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let address = base.trim_start_matches("http://").to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .env(
                "GUICHET_TOKEN",
                crate::common::bearer(crate::common::EVERY_ROLE),
            )
            .arg(root.join("tests/clients/reflection_sweep.py"))
            .arg(&address)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the Python client failed (it needs `pip install grpcio grpcio-reflection`, which \
         .ci/run does):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

const LISTED: [&str; 6] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "guichet.v1.CallCentre",
    "guichet.v1.Desk",
    "guichet.v1.Postal",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_advertises_what_it_serves_and_nothing_else() {
    let (env, app) = common::mesh_on(Backend::Embedded).await;
    let answer = sweep(&app.base).await;

    // Only what is passed on (and health and reflection themselves): not
    // the instruction services, which the gateway does not pass on.
    assert_eq!(strings(&answer["services"]), LISTED, "{answer}");
    assert_eq!(answer["unresolved"], serde_json::json!([]), "{answer}");

    // Every read method of every listed service is served.
    let calls = answer["calls"].as_object().unwrap();
    for method in [
        "guichet.v1.CallCentre/GetReport",
        "guichet.v1.CallCentre/ListReports",
        "guichet.v1.Desk/ListSites",
        "guichet.v1.Desk/ListSlots",
        "guichet.v1.Desk/GetAppointment",
        "guichet.v1.Postal/GetBatch",
        "guichet.v1.Postal/ListKeying",
        "guichet.v1.Postal/GetEnvelope",
        "guichet.v1.Postal/GetPage",
        "guichet.v1.Postal/ListLetters",
        "guichet.v1.Postal/GetLetter",
    ] {
        assert!(calls.contains_key(method), "{method} not called: {answer}");
    }
    for (method, code) in calls {
        assert!(
            ["OK", "INVALID_ARGUMENT", "NOT_FOUND"].contains(&code.as_str().unwrap()),
            "{method} answered {code}"
        );
    }

    // Health answers for every listed service, and for the gateway as a whole.
    let health = &answer["health"];
    for service in LISTED.iter().chain(&[""]) {
        assert_eq!(health[*service], "SERVING", "{service}: {health}");
    }
    assert_eq!(health["no.such.Service"], "NOT_FOUND", "{health}");

    // Anything else is a gRPC UNIMPLEMENTED.
    for (path, code) in answer["unknown"].as_object().unwrap() {
        assert_eq!(code, "UNIMPLEMENTED", "{path}");
    }
    // ...as HTTP 200 with grpc-status 12, whatever the HTTP version.
    for path in [
        "/guichet.v1.InstructionDesk/TakeNext",
        "/no.such.Service/Get",
    ] {
        let r = app
            .http
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/grpc")
            .body(vec![0u8, 0, 0, 0, 0])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["grpc-status"], "12", "{path}");
    }
    // A REST client still gets its 404.
    let r = app.get("/api/v1/no-such-route").await;
    assert_eq!(r.status(), 404);

    common::stop(app, env).await;
}

/// A gateway whose postal service is gone says so: `NOT_SERVING` for that
/// service, `SERVING` for the others, and its calls are `UNAVAILABLE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_health_tells_the_state_of_each_service_behind() {
    let (env, app) = common::mesh_on(Backend::Embedded).await;
    // A port nothing listens on (nor will: see `free_port`).
    let gone: std::net::SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
    let url = guichet_kit::grpc::url_of;
    let targets = guichet_gateway::Targets {
        intake_web: url(app.mesh.intake_web_addr),
        instruction: url(app.mesh.instruction_addr),
        intake_ccc: url(app.mesh.intake_ccc_addr),
        intake_pan: url(app.mesh.intake_pan_addr),
        intake_postal: url(gone),
        notifier: url(app.mesh.notifier_addr),
    };
    let shutdown = guichet_kit::shutdown::Shutdown::new();
    let config = env.config();
    let second = guichet_gateway::start(
        &config,
        &config.access,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        targets,
        guichet_kit::clock::system(),
        guichet_kit::Metrics::new(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let answer = sweep(&format!("http://{}", second.http_addr)).await;
    assert_eq!(strings(&answer["services"]), LISTED, "{answer}");
    let health = &answer["health"];
    assert_eq!(health["guichet.v1.Postal"], "NOT_SERVING", "{health}");
    for service in ["guichet.v1.CallCentre", "guichet.v1.Desk", ""] {
        assert_eq!(health[service], "SERVING", "{service}: {health}");
    }
    let calls = answer["calls"].as_object().unwrap();
    assert_eq!(
        calls["guichet.v1.Postal/ListKeying"], "UNAVAILABLE",
        "{answer}"
    );
    assert_ne!(calls["guichet.v1.Desk/ListSites"], "UNIMPLEMENTED");
    shutdown.cancel();
    common::stop(app, env).await;
}
