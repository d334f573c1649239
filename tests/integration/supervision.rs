//! A service whose task dies must not go on saying it is ready: it turns
//! not-ready, stops taking work, and the process stops with an error so its
//! supervisor (systemd, Kubernetes, compose) starts it again.

use crate::common;

use std::time::Duration;

use common::{Backend, eventually};
use serde_json::Value;

on_both_backends!(a_dead_consumer_turns_the_mesh_not_ready_then_stops_it_with_an_error);
async fn a_dead_consumer_turns_the_mesh_not_ready_then_stops_it_with_an_error(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let readyz = format!("{}/readyz", app.base);
    let ready = app.http.get(&readyz).send().await.unwrap();
    assert_eq!(ready.status(), 200, "ready before anything happens");

    assert!(
        app.mesh.abort("instruction", "consumer"),
        "instruction has a task named consumer"
    );
    // Before the process stops, the gateway's readiness says instruction is
    // gone: a load balancer or an orchestrator stops sending it work.
    let answer: Value = eventually(
        Duration::from_secs(10),
        "/readyz answering 503 for instruction",
        || async {
            let r = app.http.get(&readyz).send().await.ok()?;
            (r.status() == 503).then_some(())?;
            r.json().await.ok()
        },
    )
    .await;
    assert_eq!(answer["ready"], false);
    assert_eq!(answer["services"]["instruction"], "unavailable");
    assert_eq!(
        answer["services"]["intake-web"], "ready",
        "only the failed one"
    );

    // Then the whole process is asked to stop, and what `main` waits on
    // reports the failure (the process exits non-zero with it).
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        guichet_kit::service::wait_supervised(
            app.mesh.tasks,
            app.shutdown.clone(),
            Duration::from_secs(15),
        ),
    )
    .await
    .expect("the mesh stops by itself");
    assert!(app.shutdown.is_cancelled(), "the process was asked to stop");
    let failure = outcome.expect_err("a failure, for a non-zero exit");
    assert_eq!(
        (failure.service, failure.task, failure.how),
        ("instruction", "consumer", "was aborted")
    );
    env.cleanup().await;
}

on_both_backends!(a_signal_stops_the_mesh_cleanly);
async fn a_signal_stops_the_mesh_cleanly(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    // What SIGTERM does: the process token is cancelled, and every service
    // drains without being counted as failed.
    app.shutdown.cancel();
    let outcome = guichet_kit::service::wait_supervised(
        app.mesh.tasks,
        app.shutdown.clone(),
        Duration::from_secs(15),
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    env.cleanup().await;
}
