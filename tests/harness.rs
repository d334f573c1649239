//! The test harness itself: what a failing test leaves behind.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::{Backend, TestEnv, database_admin_url, rabbitmq_api};

/// A test that panics before its `cleanup` still drops its database and
/// vhost (and its data folder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_test_leaves_no_database_or_vhost_behind() {
    let env = TestEnv::on(Backend::Servers).await;
    let name = env.name.clone();
    let admin = sqlx::PgPool::connect(&database_admin_url()).await.unwrap();
    let exists = |name: String| {
        let admin = admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_database WHERE datname = $1")
                .bind(name)
                .fetch_one(&admin)
                .await
                .unwrap()
        }
    };
    let vhost = |name: String| async move {
        reqwest::Client::new()
            .get(format!("{}/api/vhosts/{name}", rabbitmq_api()))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(exists(name.clone()).await, 1);
    assert_eq!(vhost(name.clone()).await, 200);
    // The test body fails with the environment still held.
    let failed = tokio::spawn(async move {
        let _env = env;
        panic!("a test that fails");
    })
    .await;
    assert!(failed.unwrap_err().is_panic());
    assert_eq!(exists(name.clone()).await, 0, "the database is gone");
    assert_eq!(vhost(name).await, 404, "the vhost is gone");
}
