//! Who may do what, from the outside: tokens from the development issuer
//! (checked by the gateway against its discovery document and JWKS, over
//! HTTP), roles from the gateway's store, the policy table applied to
//! real calls on both backends, held cases, persons' own links, and the
//! audit log.

use reqwest::Method;
use serde_json::{Value, json};

/// The real OpenID provider of the identity crate's tests (oidc-provider).
#[allow(dead_code)]
#[path = "../../services/identity/tests/support/mod.rs"]
pub(crate) mod real_provider;

use crate::common::{self, App, Backend, TestEnv, bearer, client_bearer, dev_issuer, example};

async fn start(backend: Backend) -> (TestEnv, App) {
    common::mesh_on(backend).await
}

/// The status of `method path` as `who` (`None`: anonymous).
async fn status_as(
    app: &App,
    who: Option<&str>,
    method: Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method.clone(), format!("{}{path}", app.base));
    if let Some(uid) = who {
        request = request.header("Authorization", bearer(uid));
    }
    if method != Method::GET {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// A renewal filed online in prefecture 59, with its family name.
async fn filed_in_59(app: &App, family_name: &str) -> String {
    let mut filing = example("renewal-employee.json");
    filing["applicant"]["family_name"] = json!(family_name);
    let reference = app.file_accepted(&filing).await;
    common::eventually(
        std::time::Duration::from_secs(20),
        "the dossier in instruction",
        || async { (app.dossier(&reference).await.status() == 200).then_some(()) },
    )
    .await;
    reference
}

async fn access_matrix(backend: Backend) {
    let (env, app) = start(backend).await;
    let secret_name = "Zyxwvutsrq";
    let reference = filed_in_59(&app, secret_name).await;
    let case = format!("/api/v1/agent/dossiers/{reference}");
    let anonymous: Option<&str> = None;
    // (who, method, path, body, expected status)
    let rows: Vec<(Option<&str>, Method, String, Value, u16)> = vec![
        // the whole file: instructors and supervisors of 59 only
        (anonymous, Method::GET, case.clone(), Value::Null, 401),
        (
            Some("instructor-75"),
            Method::GET,
            case.clone(),
            Value::Null,
            403,
        ),
        (Some("desk-59"), Method::GET, case.clone(), Value::Null, 403),
        (Some("ccc-1"), Method::GET, case.clone(), Value::Null, 403),
        (
            Some("mailroom-1"),
            Method::GET,
            case.clone(),
            Value::Null,
            403,
        ),
        (
            Some("operator-1"),
            Method::GET,
            case.clone(),
            Value::Null,
            403,
        ),
        (
            Some("someone-unknown"),
            Method::GET,
            case.clone(),
            Value::Null,
            403,
        ),
        (
            Some("instructor-59"),
            Method::GET,
            case.clone(),
            Value::Null,
            200,
        ),
        (
            Some("supervisor-59"),
            Method::GET,
            case.clone(),
            Value::Null,
            200,
        ),
        // the dossier's history: agents who deal with it
        (
            anonymous,
            Method::GET,
            format!("/api/v1/dossiers/{reference}"),
            Value::Null,
            401,
        ),
        (
            Some("instructor-75"),
            Method::GET,
            format!("/api/v1/dossiers/{reference}"),
            Value::Null,
            403,
        ),
        (
            Some("desk-59"),
            Method::GET,
            format!("/api/v1/dossiers/{reference}"),
            Value::Null,
            200,
        ),
        (
            Some("ccc-1"),
            Method::GET,
            format!("/api/v1/dossiers/{reference}"),
            Value::Null,
            200,
        ),
        // deciding: only the holder (nobody holds it yet)
        (
            Some("instructor-59"),
            Method::POST,
            format!("{case}/decision"),
            json!({"favourable": true}),
            403,
        ),
        // the mailroom's routes
        (
            anonymous,
            Method::GET,
            "/api/v1/postal/keying".into(),
            Value::Null,
            401,
        ),
        (
            Some("instructor-59"),
            Method::GET,
            "/api/v1/postal/keying".into(),
            Value::Null,
            403,
        ),
        (
            Some("mailroom-1"),
            Method::GET,
            "/api/v1/postal/keying".into(),
            Value::Null,
            200,
        ),
        (
            Some("mailroom-1"),
            Method::GET,
            "/api/v1/postal/letters".into(),
            Value::Null,
            200,
        ),
        // taking the next case: one's own prefecture
        (
            Some("instructor-75"),
            Method::POST,
            "/api/v1/agent/queue/next".into(),
            json!({"prefecture": "59"}),
            403,
        ),
        (
            anonymous,
            Method::POST,
            "/api/v1/agent/queue/next".into(),
            json!({}),
            401,
        ),
        // agents and the audit log
        (
            anonymous,
            Method::GET,
            "/api/v1/admin/audit".into(),
            Value::Null,
            401,
        ),
        (
            Some("instructor-59"),
            Method::GET,
            "/api/v1/admin/audit".into(),
            Value::Null,
            403,
        ),
        (
            Some("operator-1"),
            Method::GET,
            "/api/v1/admin/audit".into(),
            Value::Null,
            200,
        ),
        (
            Some("supervisor-59"),
            Method::GET,
            "/api/v1/admin/audit".into(),
            Value::Null,
            200,
        ),
        (
            Some("supervisor-59"),
            Method::GET,
            "/api/v1/admin/audit?prefecture=75".into(),
            Value::Null,
            403,
        ),
        (
            Some("desk-59"),
            Method::GET,
            "/api/v1/admin/agents".into(),
            Value::Null,
            403,
        ),
        (
            Some("operator-1"),
            Method::GET,
            "/api/v1/admin/agents".into(),
            Value::Null,
            200,
        ),
        // public figures: anyone
        (
            anonymous,
            Method::GET,
            "/api/v1/sites".into(),
            Value::Null,
            200,
        ),
        (
            Some("ccc-1"),
            Method::GET,
            "/api/v1/processing-times?prefecture=59".into(),
            Value::Null,
            200,
        ),
    ];
    let mut wrong = Vec::new();
    for (who, method, path, body, expected) in rows {
        let (status, answer) = status_as(&app, who, method.clone(), &path, body).await;
        if status != expected {
            wrong.push(format!(
                "{who:?} {method} {path}: {status}, expected {expected}: {answer}"
            ));
        }
        if status >= 400 {
            assert!(
                !answer.to_string().contains(secret_name),
                "a refusal shows personal data: {answer}"
            );
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    common::stop(app, env).await;
}
on_both_backends!(access_matrix);

async fn tokens_are_checked(backend: Backend) {
    let (env, app) = start(backend).await;
    let issuer = dev_issuer();
    let next = format!("{}/api/v1/agent/queue/next", app.base);
    let send = |token: String| {
        let http = app.http.clone();
        let next = next.clone();
        async move {
            http.post(&next)
                .header("Authorization", format!("Bearer {token}"))
                .json(&json!({"prefecture": "59"}))
                .send()
                .await
                .unwrap()
        }
    };
    let expired = issuer.token_with(json!({"uid": "instructor-59", "exp": 1_700_000_000}));
    let wrong_audience = issuer.token_with(json!({"uid": "instructor-59", "aud": "other-api"}));
    for (what, token) in [
        ("expired", expired),
        ("wrong audience", wrong_audience),
        ("not a JWT", "garbage".to_string()),
    ] {
        let r = send(token).await;
        assert_eq!(r.status(), 401, "{what}");
        assert!(
            r.headers().contains_key("www-authenticate"),
            "{what}: a 401 says how to authenticate"
        );
    }
    // A good token works (the queue is empty: 404), before and after the
    // provider rotates its key, without restarting anything.
    let good = send(issuer.agent_token("instructor-59")).await;
    assert_eq!(good.status(), 404, "{:?}", good.text().await);
    // The shared issuer must not rotate under the other tests: a second
    // one, with a gateway of its own, does.
    // Another issuer's token, even for a known uid, is refused (after the
    // rotation: an unknown key makes the gateway fetch the keys again, at
    // most once per interval, whoever sends it).
    let other = guichet_identity::dev::DevIssuer::start(
        ([127, 0, 0, 1], 0).into(),
        guichet_identity::dev::DevConfig::standard(guichet_kit::clock::system()),
        app.shutdown.clone(),
    )
    .await
    .unwrap();
    assert_eq!(send(other.agent_token("instructor-59")).await.status(), 401);
    // A token with no role at Guichet: signed in, and refused.
    assert_eq!(
        send(issuer.agent_token("nobody-at-guichet")).await.status(),
        403
    );
    common::stop(app, env).await;
}
on_both_backends!(tokens_are_checked);

/// A key rotated at the provider is picked up without a restart: the
/// gateway fetches the keys again when a token names one it does not know
/// (at most once per interval, so the first tries may wait for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_at_the_provider_is_accepted_without_a_restart() {
    let env = TestEnv::on(Backend::Embedded).await;
    let shutdown = guichet_kit::shutdown::Shutdown::new();
    let own = guichet_identity::dev::DevIssuer::start(
        ([127, 0, 0, 1], 0).into(),
        guichet_identity::dev::DevConfig::standard(guichet_kit::clock::system()),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let mut config = env.config();
    config.access.oidc_issuer = Some(own.issuer().to_string());
    let app = App::builder(&config).only(common::ONLINE).start().await;
    let take = |token: String| {
        let http = app.http.clone();
        let url = format!("{}/api/v1/agent/queue/next", app.base);
        async move {
            http.post(url)
                .header("Authorization", format!("Bearer {token}"))
                .json(&json!({"prefecture": "59"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        take(own.agent_token("instructor-59")).await,
        404,
        "the queue is empty"
    );
    own.rotate_keys();
    common::eventually(
        std::time::Duration::from_secs(30),
        "a token signed with the new key accepted",
        || async { (take(own.agent_token("instructor-59")).await == 404).then_some(()) },
    )
    .await;
    shutdown.cancel();
    common::stop(app, env).await;
}

async fn a_held_case_is_taken_over_before_anyone_else_acts(backend: Backend) {
    let (env, app) = start(backend).await;
    let reference = filed_in_59(&app, "Heldcase").await;
    let case = format!("/api/v1/agent/dossiers/{reference}");
    let (status, taken) = status_as(
        &app,
        Some("instructor-59"),
        Method::POST,
        "/api/v1/agent/queue/next",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{taken}");
    assert_eq!(taken["taken_by"], "instructor-59");
    // The supervisor of 59 may instruct, but not a case another holds.
    let (status, refused) = status_as(
        &app,
        Some("supervisor-59"),
        Method::POST,
        &format!("{case}/decision"),
        json!({"favourable": true}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused.to_string().contains("take it over"), "{refused}");
    // Taking over needs a reason, and is recorded.
    let (status, _) = status_as(
        &app,
        Some("supervisor-59"),
        Method::POST,
        &format!("{case}/takeover"),
        json!({}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, over) = status_as(
        &app,
        Some("supervisor-59"),
        Method::POST,
        &format!("{case}/takeover"),
        json!({"reason": "the instructor is away"}),
    )
    .await;
    assert_eq!(status, 200, "{over}");
    assert_eq!(over["taken_by"], "supervisor-59");
    // Now the first holder is the one refused.
    let (status, _) = status_as(
        &app,
        Some("instructor-59"),
        Method::POST,
        &format!("{case}/decision"),
        json!({"favourable": true}),
    )
    .await;
    assert_eq!(status, 409);
    let (status, decided) = status_as(
        &app,
        Some("supervisor-59"),
        Method::POST,
        &format!("{case}/decision"),
        json!({"favourable": true}),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    let history: Value = app.dossier(&reference).await.json().await.unwrap();
    let events = history["events"].as_array().unwrap();
    let over = events
        .iter()
        .find(|e| e["kind"] == "taken_over")
        .unwrap_or_else(|| panic!("no take-over in {history}"));
    assert_eq!(over["actor"], "supervisor-59");
    assert!(
        over["reason"].as_str().unwrap().contains("instructor-59"),
        "{over}"
    );
    // Every one of these calls is in the audit log, with who and from where.
    let (status, audit) = status_as(
        &app,
        Some("operator-1"),
        Method::GET,
        &format!("/api/v1/admin/audit?dossier={reference}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let rows = audit.as_array().unwrap();
    let ops: Vec<(&str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["agent"].as_str().unwrap_or(""),
                r["operation"].as_str().unwrap(),
                r["status"].as_i64().unwrap(),
            )
        })
        .collect();
    for expected in [
        (
            "supervisor-59",
            "POST /api/v1/agent/dossiers/{reference}/takeover",
            200,
        ),
        (
            "supervisor-59",
            "POST /api/v1/agent/dossiers/{reference}/decision",
            200,
        ),
        (
            "instructor-59",
            "POST /api/v1/agent/dossiers/{reference}/decision",
            409,
        ),
        ("instructor-59", "POST /api/v1/agent/queue/next", 200),
    ] {
        assert!(ops.contains(&expected), "{expected:?} not in {ops:?}");
    }
    assert!(rows.iter().all(|r| r["client"] == "127.0.0.1"), "{audit}");
    common::stop(app, env).await;
}
on_both_backends!(a_held_case_is_taken_over_before_anyone_else_acts);

async fn supervisors_grant_their_prefectures_roles(backend: Backend) {
    let (env, app) = start(backend).await;
    filed_in_59(&app, "Granted").await;
    let newcomer = "newcomer-59";
    let take = json!({"prefecture": "59"});
    let (status, _) = status_as(
        &app,
        Some(newcomer),
        Method::POST,
        "/api/v1/agent/queue/next",
        take.clone(),
    )
    .await;
    assert_eq!(status, 403, "no role yet");
    let grant = format!("/api/v1/admin/agents/{newcomer}/grants/instructor/59");
    for (who, path, expected) in [
        ("instructor-59", grant.clone(), 403),
        (
            "supervisor-59",
            format!("/api/v1/admin/agents/{newcomer}/grants/instructor/75"),
            403,
        ),
        (
            "supervisor-59",
            format!("/api/v1/admin/agents/{newcomer}/grants/supervisor/59"),
            403,
        ),
        (
            "supervisor-59",
            format!("/api/v1/admin/agents/{newcomer}/grants/pilot/59"),
            400,
        ),
        (
            "supervisor-59",
            "/api/v1/admin/agents/bad%20uid/grants/instructor/59".to_string(),
            400,
        ),
    ] {
        let (status, body) = status_as(&app, Some(who), Method::PUT, &path, Value::Null).await;
        assert_eq!(status, expected, "{who} PUT {path}: {body}");
    }
    let (status, body) = status_as(
        &app,
        Some("supervisor-59"),
        Method::PUT,
        &grant,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["changed"].clone()),
        (200, json!(true)),
        "{body}"
    );
    let (status, body) = status_as(
        &app,
        Some("supervisor-59"),
        Method::PUT,
        &grant,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["changed"].clone()),
        (200, json!(false)),
        "{body}"
    );
    let (status, case) = status_as(
        &app,
        Some(newcomer),
        Method::POST,
        "/api/v1/agent/queue/next",
        take.clone(),
    )
    .await;
    assert_eq!(status, 200, "granted: {case}");
    let (status, listed) = status_as(
        &app,
        Some("supervisor-59"),
        Method::GET,
        "/api/v1/admin/agents",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["uid"] == newcomer),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains("instructor-75"),
        "a supervisor of 59 sees 59's agents: {listed}"
    );
    let (status, _) = status_as(
        &app,
        Some("supervisor-59"),
        Method::DELETE,
        &grant,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = status_as(
        &app,
        Some(newcomer),
        Method::GET,
        &format!(
            "/api/v1/agent/dossiers/{}",
            case["dossier"]["reference"].as_str().unwrap()
        ),
        Value::Null,
    )
    .await;
    assert_eq!(status, 403, "revoked at once");
    let (_, audit) = status_as(
        &app,
        Some("operator-1"),
        Method::GET,
        "/api/v1/admin/audit?agent=supervisor-59",
        Value::Null,
    )
    .await;
    let changes: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["operation"] == "grant" || r["operation"] == "revoke")
        .map(|r| r["operation"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["revoke", "grant"], "{audit}");
    common::stop(app, env).await;
}
on_both_backends!(supervisors_grant_their_prefectures_roles);

async fn a_person_needs_their_own_link(backend: Backend) {
    let (env, app) = start(backend).await;
    // The prefecture's supervisor opens a site, through desk software's gRPC.
    use guichet_proto::v1 as pb;
    let mut desk = guichet_proto::v1::desk_client::DeskClient::new(app.grpc().await);
    let site = pb::Site {
        id: "59-access".into(),
        name: "Préfecture du Nord".into(),
        prefecture: "59".into(),
        kind: pb::SiteKind::Prefecture as i32,
        address: None,
        opening_hours: (1..=5)
            .map(|d| pb::OpeningHours {
                weekday: d,
                opens: "09:00".into(),
                closes: "12:00".into(),
            })
            .collect(),
        desks: 2,
        slot_minutes: 30,
        places_per_slot: 2,
        places_for_reports: 0,
    };
    let as_agent = |uid: &str, site: pb::Site| {
        let mut r = tonic::Request::new(site);
        r.metadata_mut()
            .insert("authorization", bearer(uid).parse().unwrap());
        r
    };
    let refused = desk
        .upsert_site(as_agent("desk-59", site.clone()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let mut elsewhere = site.clone();
    elsewhere.prefecture = "75".into();
    let refused = desk
        .upsert_site(as_agent("supervisor-59", elsewhere))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    desk.upsert_site(as_agent("supervisor-59", site.clone()))
        .await
        .expect("the supervisor of 59 opens a site of 59");
    let mut day = guichet_dossier::calendar::paris_date(chrono::Utc::now()) + chrono::Days::new(2);
    while !guichet_dossier::calendar::is_working_day(day, "59") {
        day = day + chrono::Days::new(1);
    }
    let slots: Value = app
        .get_json(&format!("/api/v1/sites/{}/slots?date={day}", site.id))
        .await;
    let starts_at = slots[0]["starts_at"]
        .as_str()
        .unwrap_or_else(|| panic!("a free slot: {slots}"))
        .to_string();
    let site = site.id;
    let booked = app
        .http
        .post(format!("{}/api/v1/appointments", app.base))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"site_id": site, "starts_at": starts_at,
                      "person": {"family_name": "Linkholder", "email": "l@example.org"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(booked.status(), 201);
    let booked: Value = booked.json().await.unwrap();
    let id = booked["id"].as_str().unwrap();
    let secret = booked["secret"]
        .as_str()
        .expect("the person's secret")
        .to_string();
    let path = format!("{}/api/v1/appointments/{id}", app.base);
    let get = |secret: Option<&str>, who: Option<&str>| {
        let mut r = app.http.get(&path);
        if let Some(s) = secret {
            r = r.header("X-Link-Secret", s);
        }
        if let Some(uid) = who {
            r = r.header("Authorization", bearer(uid));
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(None, None).await, 401, "the id alone is not enough");
    assert_eq!(
        get(Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), None).await,
        401
    );
    assert_eq!(get(Some(&secret), None).await, 200);
    assert_eq!(get(None, Some("desk-59")).await, 200);
    assert_eq!(get(None, Some("ccc-1")).await, 200);
    assert_eq!(get(None, Some("instructor-59")).await, 403);
    // A plain cancellation without the link is refused; with it, done.
    let cancel = format!("{path}/cancellation");
    let r = app
        .http
        .post(&cancel)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .http
        .post(&cancel)
        .header("X-Link-Secret", &secret)
        .json(&json!({"reason": "found another date"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    common::stop(app, env).await;
}
on_both_backends!(a_person_needs_their_own_link);

async fn the_public_queue_names_no_file(backend: Backend) {
    let (env, app) = start(backend).await;
    let reference = filed_in_59(&app, "Queued").await;
    let public: Value = app.get_json("/api/v1/queue?prefecture=59").await;
    assert_eq!(public.as_array().unwrap().len(), 1, "{public}");
    assert!(public[0].get("reference").is_none(), "{public}");
    assert!(!public.to_string().contains(&reference));
    let (status, full) = status_as(
        &app,
        Some("instructor-59"),
        Method::GET,
        "/api/v1/queue?prefecture=59",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(full[0]["reference"], json!(reference));
    let (_, other) = status_as(
        &app,
        Some("instructor-75"),
        Method::GET,
        "/api/v1/queue?prefecture=59",
        Value::Null,
    )
    .await;
    assert!(
        other[0].get("reference").is_none(),
        "another prefecture's: {other}"
    );
    // An agent of one prefecture who names none sees theirs.
    let (_, mine) = status_as(
        &app,
        Some("instructor-59"),
        Method::GET,
        "/api/v1/queue",
        Value::Null,
    )
    .await;
    assert_eq!(mine[0]["reference"], json!(reference), "{mine}");
    common::stop(app, env).await;
}
on_both_backends!(the_public_queue_names_no_file);

async fn machine_clients_act_for_a_named_agent(backend: Backend) {
    let (env, app) = start(backend).await;
    let station = client_bearer("guichet-scanner-1");
    for path in ["/api/v1/sites", "/api/v1/postal/keying"] {
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .header("Authorization", &station)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "a scanning station only uploads: {path}");
    }
    // Call-centre software over gRPC: it must name the agent acting, whose
    // rights apply.
    use guichet_proto::v1::call_centre_client::CallCentreClient;
    let mut ccc = CallCentreClient::new(app.grpc().await);
    let list = |acting: Option<&str>| {
        let mut request = tonic::Request::new(guichet_proto::v1::ListReportsRequest::default());
        request.metadata_mut().insert(
            "authorization",
            client_bearer("guichet-ccc-software").parse().unwrap(),
        );
        if let Some(uid) = acting {
            request
                .metadata_mut()
                .insert("x-acting-agent", uid.parse().unwrap());
        }
        request
    };
    let refused = ccc.list_reports(list(None)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let refused = ccc
        .list_reports(list(Some("mailroom-1")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    ccc.list_reports(list(Some("ccc-1")))
        .await
        .expect("the call-centre agent, through their software");
    let anonymous = ccc
        .list_reports(guichet_proto::v1::ListReportsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    common::stop(app, env).await;
}
on_both_backends!(machine_clients_act_for_a_named_agent);

/// The audit log cannot be rewritten, only added to (and purged past retention).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_append_only() {
    for backend in [Backend::Servers, Backend::Embedded] {
        let env = TestEnv::on(backend).await;
        let config = env.config();
        let directory = guichet_gateway::directory::Directory::open(
            config.database_url.as_deref(),
            &config.data_dir,
            config.db_pool(),
        )
        .await
        .unwrap();
        directory
            .audit(&guichet_gateway::directory::AuditEntry {
                at: chrono::Utc::now(),
                actor: "agent:a".into(),
                agent: Some("a".into()),
                operation: "GET /x".into(),
                target: "/x".into(),
                dossier: None,
                prefecture: None,
                client: "127.0.0.1".into(),
                status: 200,
            })
            .await
            .unwrap();
        let rewritten = directory
            .db()
            .execute(guichet_kit::sql::Stmt::new(
                "UPDATE audit_log SET actor = 'someone else'",
            ))
            .await;
        assert!(
            rewritten.is_err(),
            "{backend:?}: an audit row was rewritten"
        );
        let purged = directory
            .purge_audit(chrono::Utc::now() + chrono::Duration::seconds(1))
            .await
            .unwrap();
        assert_eq!(purged, 1, "{backend:?}");
        directory.db().close().await;
        env.cleanup().await;
    }
}

/// An agent signs in with a browser: authorization code with PKCE through
/// the gateway, a session cookie, and a CSRF token every change must carry.
async fn a_browser_signs_in_and_every_change_carries_its_csrf_token(backend: Backend) {
    let (env, app) = start(backend).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = |r: &reqwest::Response| {
        r.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("a redirect: {r:?}"))
            .to_string()
    };
    // To the provider, with PKCE.
    let r = browser
        .get(format!("{}/auth/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let authorize = reqwest::Url::parse(&location(&r)).unwrap();
    let query: std::collections::BTreeMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert!(
        !query.contains_key("code_verifier"),
        "the verifier stays with the gateway"
    );
    // The agent picks who they are at the (development) provider.
    let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    form.push(("uid".into(), "instructor-59".into()));
    let r = browser
        .post(format!("{}/authorize", dev_issuer().issuer()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let back = location(&r);
    assert!(
        back.starts_with(&format!("{}/auth/callback?", app.base)),
        "{back}"
    );
    // A forged state is refused; the real answer opens a session, once.
    let forged = back.replace("state=", "state=forged");
    let r = browser.get(&forged).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = browser.get(&back).send().await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_string();
    for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();
    let again = browser.get(&back).send().await.unwrap();
    assert_eq!(again.status(), 401, "a sign-in answer serves once");
    let me: Value = browser
        .get(format!("{}/auth/session", app.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["uid"], "instructor-59", "{me}");
    assert!(me["roles"].to_string().contains("instructor 59"), "{me}");
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    // Reading needs the cookie alone; a change needs the CSRF token too.
    let next = format!("{}/api/v1/agent/queue/next", app.base);
    let r = browser
        .post(&next)
        .header("cookie", &session)
        .json(&json!({"prefecture": "59"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "without the CSRF token");
    let r = browser
        .post(&next)
        .header("cookie", &session)
        .header("x-csrf-token", "not-it")
        .json(&json!({"prefecture": "59"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "with another token");
    filed_in_59(&app, "Browser").await;
    let r = browser
        .post(&next)
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .json(&json!({"prefecture": "59"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Signed out, the cookie opens nothing.
    let r = browser
        .post(format!("{}/auth/logout", app.base))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = browser
        .get(format!("{}/auth/session", app.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    common::stop(app, env).await;
}
on_both_backends!(a_browser_signs_in_and_every_change_carries_its_csrf_token);

/// A case held by an agent who stopped acting on it goes back to the
/// queue after the idle time, with the release in its history.
async fn a_case_held_idle_goes_back_to_the_queue(backend: Backend) {
    let env = TestEnv::on(backend).await;
    let mut config = env.config();
    config.sweep_interval_s = 1;
    config.instruction.hold_idle_minutes = 60;
    let clock = std::sync::Arc::new(common::ShiftedClock::default());
    let app = App::builder(&config).clock(clock.clone()).start().await;
    let reference = filed_in_59(&app, "Idle").await;
    let take = |uid: &'static str| {
        let app = &app;
        async move {
            let (status, case) = status_as(
                app,
                Some(uid),
                Method::POST,
                "/api/v1/agent/queue/next",
                json!({"prefecture": "59"}),
            )
            .await;
            (status, case["dossier"]["reference"].clone())
        }
    };
    assert_eq!(take("instructor-59").await, (200, json!(reference)));
    assert_eq!(take("supervisor-59").await.0, 404, "held: not in the queue");
    // An hour and a bit without an act: released by the sweep.
    clock.advance(chrono::Duration::minutes(61));
    app.two_more_sweeps().await;
    assert_eq!(take("supervisor-59").await, (200, json!(reference)));
    let history: Value = app.dossier(&reference).await.json().await.unwrap();
    let released = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "released")
        .unwrap_or_else(|| panic!("no release in {history}"));
    assert!(
        released["reason"]
            .as_str()
            .unwrap()
            .contains("instructor-59"),
        "{released}"
    );
    common::stop(app, env).await;
}
on_both_backends!(a_case_held_idle_goes_back_to_the_queue);

/// Against the real provider (oidc-provider from npm, `infra/oidc`): an
/// agent signs in through the gateway with its login form, code + PKCE,
/// and takes the next case of their prefecture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_signs_in_at_the_real_provider_through_the_gateway() {
    let provider = real_provider::Provider::start();
    let env = TestEnv::on(Backend::Embedded).await;
    let mut config = env.config();
    config.access.oidc_issuer = Some(provider.issuer.clone());
    // The redirect URI registered at the provider; the test carries the
    // browser from there to this gateway's address.
    config.access.public_url = Some("http://127.0.0.1:8080".into());
    let app = App::builder(&config).only(common::ONLINE).start().await;
    // Filed, and recorded (seen by the public status look-up: this
    // gateway trusts the real provider only).
    let filing = example("renewal-employee.json");
    let born = filing["applicant"]["birth_date"]
        .as_str()
        .unwrap()
        .to_string();
    let reference = app.file_accepted(&filing).await;
    common::eventually(
        std::time::Duration::from_secs(20),
        "the dossier in instruction",
        || async {
            (app.get(&format!(
                "/api/v1/dossiers/{reference}/status?birth_date={born}"
            ))
            .await
            .status()
                == 200)
                .then_some(())
        },
    )
    .await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser
        .get(format!("{}/auth/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let authorize = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        authorize.as_str().starts_with(&provider.issuer),
        "{authorize}"
    );
    let back =
        real_provider::sign_in(&authorize, "instructor-59", real_provider::DEV_PASSWORD).await;
    let callback = back.as_str().replace("http://127.0.0.1:8080", &app.base);
    let r = browser.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let session = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let me: Value = browser
        .get(format!("{}/auth/session", app.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["uid"], "instructor-59", "{me}");
    let taken = browser
        .post(format!("{}/api/v1/agent/queue/next", app.base))
        .header("cookie", &session)
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .json(&json!({"prefecture": "59"}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 200);
    let case: Value = taken.json().await.unwrap();
    assert_eq!(case["dossier"]["reference"], json!(reference));
    assert_eq!(case["taken_by"], "instructor-59");
    // The provider's own access tokens open the API too, and a machine
    // client's names no agent: refused until it does.
    let token = provider
        .client_token("guichet-ccc-software", None)
        .await
        .access_token;
    let r = app
        .http
        .get(format!("{}/api/v1/dossiers/{reference}", app.base))
        .header("Authorization", format!("Bearer {}", token.expose()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "software must name the agent acting");
    let r = app
        .http
        .get(format!("{}/api/v1/dossiers/{reference}", app.base))
        .header("Authorization", format!("Bearer {}", token.expose()))
        .header("X-Acting-Agent", "ccc-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    common::stop(app, env).await;
}

/// The call centre's status look-up counts wrong birth dates as the REST
/// look-up does: per file, and per agent.
async fn the_call_centre_look_up_limits_wrong_birth_dates(backend: Backend) {
    let (env, app) = start(backend).await;
    let reference = filed_in_59(&app, "Lookup").await;
    let mut ccc =
        guichet_proto::v1::call_centre_client::CallCentreClient::new(app.grpc_as("ccc-1").await);
    let ask = |birth: chrono::NaiveDate| guichet_proto::v1::GetStatusRequest {
        reference: reference.clone(),
        birth_date: Some(guichet_proto::convert::date_to_pb(birth)),
    };
    let wrong = chrono::NaiveDate::from_ymd_opt(1950, 1, 1).unwrap();
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(ccc.look_up_status(ask(wrong)).await.unwrap_err().code());
    }
    let tries = env.config().status_tries as usize;
    assert!(
        codes[..tries].iter().all(|c| *c == tonic::Code::NotFound),
        "{codes:?}"
    );
    assert!(
        codes[tries..]
            .iter()
            .all(|c| *c == tonic::Code::ResourceExhausted),
        "{codes:?}"
    );
    common::stop(app, env).await;
}
on_both_backends!(the_call_centre_look_up_limits_wrong_birth_dates);
