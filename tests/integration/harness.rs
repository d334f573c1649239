//! The test harness itself: what a failing test leaves behind.

use crate::common;

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

/// Every test file is a module of this binary (`autotests = false`, so cargo
/// would silently build nothing for a file left beside it), save
/// `tests/tracing.rs`, which must stay alone (see `main.rs`).
#[test]
fn every_test_file_is_a_module_of_the_one_test_binary() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let rust_files = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        rust_files(&tests),
        ["tracing"],
        "a test file in tests/ is never built: move it to tests/integration/ and declare it \
         in tests/integration/main.rs"
    );
    let main = std::fs::read_to_string(tests.join("integration/main.rs")).unwrap();
    for module in rust_files(&tests.join("integration")) {
        if module != "main" {
            assert!(
                main.lines().any(|l| l.trim() == format!("mod {module};")),
                "tests/integration/{module}.rs is not declared in tests/integration/main.rs"
            );
        }
    }
}
