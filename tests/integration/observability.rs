//! What operators see: `/metrics` moves by exactly what happened, per
//! channel, and the equity report compares the channels on the same measures.

use crate::common;

use std::time::Duration;

use chrono::{Days, Utc};
use common::{Backend, eventually, example};
use serde_json::{Value, json};

on_both_backends!(metrics_move_by_exactly_the_filings_of_each_channel);
async fn metrics_move_by_exactly_the_filings_of_each_channel(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let today = guichet_dossier::calendar::paris_date(Utc::now());
    let series = [
        r#"guichet_filings_accepted_total{channel="web"}"#,
        r#"guichet_dossiers_recorded_total{channel="web"}"#,
        r#"guichet_dossiers_recorded_total{channel="postal"}"#,
        r#"guichet_filing_to_instruction_seconds_count{channel="web"}"#,
        r#"guichet_filing_to_instruction_seconds_count{channel="postal"}"#,
        r#"guichet_time_to_receipt_seconds_count{channel="web"}"#,
        r#"guichet_messages_consumed_total{queue="instruction.dossiers"}"#,
        r#"guichet_validation_failures_total{channel="web",field="applicant.birth_date"}"#,
    ];
    let mut before = Vec::new();
    for s in series {
        before.push(app.metric(s).await);
    }

    // Three online filings, one of them sent twice (a retry counts once).
    for key in ["m-1", "m-2", "m-3", "m-3"] {
        let r = app.file(&example("renewal-employee.json"), Some(key)).await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    // Two by post.
    for _ in 0..2 {
        app.file_by_post(
            &example("first-application-student.json"),
            today - Days::new(3),
            today,
        )
        .await;
    }
    // One refused for a bad birth date.
    let mut broken = example("renewal-employee.json");
    broken["applicant"]["birth_date"] = json!("31/02/1990");
    assert_eq!(app.file(&broken, Some("m-bad")).await.status(), 400);

    let expected = [3.0, 3.0, 2.0, 3.0, 2.0, 3.0, 5.0, 1.0];
    let moved = eventually(Duration::from_secs(20), "every count moved", || {
        let app = &app;
        let before = before.clone();
        async move {
            let mut moved = Vec::new();
            for (s, b) in series.iter().zip(&before) {
                moved.push(app.metric(s).await - b);
            }
            (moved == expected).then_some(moved)
        }
    })
    .await;
    assert_eq!(moved, expected);
    // Nothing counted on a channel that filed nothing.
    assert_eq!(
        app.metric(r#"guichet_dossiers_recorded_total{channel="ccc"}"#)
            .await,
        0.0
    );
    // Every queue's bound beside its depth, for the alert at 80 %.
    for q in &guichet_kit::bus::QUEUES {
        let bound = format!("guichet_queue_bound{{queue=\"{}\"}}", q.name);
        let expected = f64::from(q.bound.max_length);
        eventually(Duration::from_secs(30), &bound, || async {
            (app.metric(&bound).await == expected).then_some(())
        })
        .await;
    }
    // The notifier takes the case events off its queue and tells people.
    eventually(
        Duration::from_secs(30),
        "the notifier's receipts",
        || async {
            (app.metric(
                r#"guichet_notifier_messages_total{medium="email",kind="receipt",outcome="sent"}"#,
            )
            .await
                > 0.0)
                .then_some(())
        },
    )
    .await;

    common::stop(app, env).await;
}

on_both_backends!(the_equity_report_compares_every_channel_on_the_same_measures);
async fn the_equity_report_compares_every_channel_on_the_same_measures(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    // The services date receipts in Paris: after midnight there, UTC's date
    // is still the day before and the delay would count one day more.
    let today = guichet_dossier::calendar::paris_date(Utc::now());
    // Ten different people (the same person twice would be one linked file).
    let person = |name: String| {
        let mut body = example("renewal-employee.json");
        body["applicant"]["family_name"] = json!(name);
        body
    };
    for i in 0..5 {
        let r = app
            .file(&person(format!("Web{i}")), Some(&format!("e-{i}")))
            .await;
        assert_eq!(r.status(), 201);
    }
    // Post received ten days after the postmark: a receipt ten days late.
    for i in 0..5 {
        app.file_by_post(&person(format!("Post{i}")), today - Days::new(10), today)
            .await;
    }
    let report: Value = eventually(Duration::from_secs(20), "ten dossiers compared", || {
        let app = &app;
        async move {
            let r: Value = app
                .http
                .get(format!("{}/api/v1/equity?margin=0.5", app.base))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let total: u64 = r["channels"]
                .as_array()?
                .iter()
                .filter_map(|c| c["dossiers"].as_u64())
                .sum();
            (total == 10).then_some(r)
        }
    })
    .await;
    assert_eq!(report["margin"], json!(0.5));
    let channel = |name: &str| {
        report["channels"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["channel"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    assert_eq!(
        channel("web")["median_days_to_receipt"]["value"],
        json!(0.0)
    );
    assert_eq!(
        channel("postal")["median_days_to_receipt"]["value"],
        json!(10.0)
    );
    assert_eq!(channel("ccc")["dossiers"], json!(0));
    assert_eq!(channel("ccc")["median_days_to_receipt"], Value::Null);
    // Post is flagged on time to receipt, and on nothing else.
    assert_eq!(
        report["flags"],
        json!([{
            "channel": "postal",
            "measure": "median_days_to_receipt",
            "value": 10.0,
            "best_channel": "web",
            "best": 0.0,
        }])
    );
    let bad = app.get("/api/v1/equity?margin=-1").await;
    assert_eq!(bad.status(), 400);
    let page = app.get("/ops").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Équité entre les canaux"), "{html}");
    assert!(
        html.contains("class=\"guichet-flag\""),
        "the flagged cell is marked: {html}"
    );
    let english = app.get("/en/ops").await.text().await.unwrap();
    assert!(english.contains("Equity between channels"), "{english}");

    common::stop(app, env).await;
}
