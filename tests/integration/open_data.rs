//! The independent evaluation's open data, for a year seeded through the
//! real pipeline: its totals match the instruction database, no cell under
//! the minimum count is published, and the CSV says the same as the JSON.

use crate::common;

use std::time::Duration;

use common::{Backend, eventually};
use guichet_kit::sql::Stmt;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
/// The instruction service's default (`GUICHET_OPEN_DATA_MIN_COUNT`).
const MIN_COUNT: u64 = 11;

async fn a_seeded_year_is_published_with_its_small_cells_withheld(backend: Backend) {
    let (env, app) = common::mesh_on(backend).await;
    let today = guichet_dossier::calendar::paris_date(chrono::Utc::now());
    let year = chrono::Datelike::year(&today);
    // 59: 24 files, 75: 12, 13: 3 (a cell under the minimum).
    let mut references = Vec::new();
    for (i, postal_code) in std::iter::repeat_n("59000", 24)
        .chain(std::iter::repeat_n("75011", 12))
        .chain(std::iter::repeat_n("13001", 3))
        .enumerate()
    {
        let mut filing = common::example("renewal-employee.json");
        filing["applicant"]["family_name"] = json!(format!("Evaluation{i:02}"));
        filing["applicant"]["foreigner_number"] = json!(format!("99{i:08}"));
        filing["contact"]["address"]["postal_code"] = json!(postal_code);
        references.push(app.file_accepted(&filing).await);
    }
    let instruction = env.db("instruction").await;
    eventually(WAIT, "every filing in instruction", || async {
        let n: i64 = instruction
            .scalar(Stmt::new("SELECT count(*) FROM dossiers"))
            .await
            .ok()?;
        (n as usize >= references.len()).then_some(())
    })
    .await;
    // 12 decisions in 59: 11 favourable, 1 unfavourable (withheld).
    for i in 0..12 {
        let r = app
            .agent_post(
                "instructor-59",
                "/api/v1/agent/queue/next",
                json!({"prefecture": "59"}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let case: Value = r.json().await.unwrap();
        let reference = case["dossier"]["reference"].as_str().unwrap().to_string();
        let r = app
            .agent_post(
                "instructor-59",
                &format!("/api/v1/agent/dossiers/{reference}/decision"),
                json!({"favourable": i != 0, "reason": "evaluation"}),
            )
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }

    let r = app.get(&format!("/donnees/{year}/evaluation.json")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let published: Value = r.json().await.unwrap();
    assert_eq!(published["min_count"], MIN_COUNT);

    // The month's national totals are the database's.
    let month = format!("{year:04}-{:02}", chrono::Datelike::month(&today));
    let total = published["month_totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["month"] == month.as_str())
        .expect("this month's totals");
    let from = chrono::Datelike::with_day0(&today, 0).unwrap();
    let count = |state: Option<&'static str>| {
        let instruction = &instruction;
        async move {
            let sql = match state {
                Some(_) => {
                    "SELECT count(*) FROM dossiers WHERE linked_to IS NULL \
                            AND legal_filing_date >= $1 AND state = $2"
                }
                None => {
                    "SELECT count(*) FROM dossiers WHERE linked_to IS NULL \
                         AND legal_filing_date >= $1"
                }
            };
            let mut stmt = Stmt::new(sql).bind(from);
            if let Some(s) = state {
                stmt = stmt.bind(s);
            }
            instruction.scalar::<i64>(stmt).await.unwrap() as u64
        }
    };
    // Every total published is the database's count.
    assert_eq!(total["filed"], count(None).await, "{total}");
    for state in ["favourable", "unfavourable"] {
        if !total[state].is_null() {
            assert_eq!(total[state], count(Some(state)).await, "{state}: {total}");
        }
    }
    assert_eq!(count(Some("favourable")).await, 11);

    // No published figure under the minimum count; 13's cell withheld.
    let cells = published["cells"].as_array().unwrap();
    const COUNTS: [&str; 8] = [
        "filed",
        "favourable",
        "unfavourable",
        "withdrawn",
        "closed_missing_documents",
        "pending",
        "needed_cover",
        "attested_when_needed",
    ];
    for cell in cells {
        for name in COUNTS {
            let v = &cell[name];
            assert!(
                v.is_null() || v.as_u64() == Some(0) || v.as_u64() >= Some(MIN_COUNT),
                "{name} = {v} in {cell}"
            );
        }
        // No withheld figure can be worked out from its cell's sum...
        let outcomes = [
            "filed",
            "favourable",
            "unfavourable",
            "withdrawn",
            "closed_missing_documents",
            "pending",
        ];
        let withheld = outcomes.iter().filter(|n| cell[**n].is_null()).count();
        assert_ne!(withheld, 1, "one withheld term of a published sum: {cell}");
    }
    // ...nor from its month's.
    for name in COUNTS {
        let month_cells: Vec<&Value> = cells
            .iter()
            .filter(|c| c["month"] == month.as_str())
            .collect();
        let withheld = month_cells.iter().filter(|c| c[name].is_null()).count();
        assert!(
            withheld != 1 || total[name].is_null(),
            "{name}: one withheld cell and the month's total published"
        );
    }
    let of = |prefecture: &str| {
        cells
            .iter()
            .find(|c| c["prefecture"] == prefecture && c["channel"] == "web")
            .unwrap_or_else(|| panic!("a cell of {prefecture}: {published}"))
    };
    assert_eq!(of("59")["filed"], 24);
    assert_eq!(
        of("59")["unfavourable"],
        Value::Null,
        "1 decision is fewer than 11"
    );
    assert_eq!(of("13")["filed"], Value::Null, "3 files are fewer than 11");
    assert_eq!(
        of("75")["filed"],
        Value::Null,
        "the smallest other cell: with the month's total, 13's would show"
    );
    assert_eq!(of("75")["favourable"], 0, "nobody is concerned: published");
    // 12 decisions on their filing day: 0 days.
    assert_eq!(of("59")["median_days_to_decision"], 0.0);

    // The CSV: the schema's header, one line a cell, withheld as empty.
    let r = app.get(&format!("/donnees/{year}/evaluation.csv")).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = r.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "month,prefecture,channel,filed,favourable,unfavourable,withdrawn,\
             closed_missing_documents,pending,needed_cover,attested_when_needed,\
             median_days_to_decision"
        )
    );
    assert_eq!(lines.count(), cells.len());
    assert!(text.contains(&format!("{month},13,web,,")), "{text}");
    let schema: Value = app.get("/donnees/schema.json").await.json().await.unwrap();
    assert_eq!(schema["fields"].as_array().unwrap().len(), 12);
    // The page, and a year that is no year.
    let page = app.get(&format!("/donnees?annee={year}")).await;
    assert_eq!(page.status(), 200);
    let r = app.get("/donnees/1999/evaluation.json").await;
    assert_eq!(r.status(), 400);
    let refusal: Value = r.json().await.expect("a program gets its refusal in JSON");
    assert!(refusal.to_string().contains("year"), "{refusal}");
    let r = app
        .get(&format!("/donnees/{}/evaluation.csv", year + 1))
        .await;
    assert_eq!(r.status(), 400);
    common::stop(app, env).await;
}
on_both_backends!(a_seeded_year_is_published_with_its_small_cells_withheld);
