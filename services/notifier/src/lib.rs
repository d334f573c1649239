//! The notifier: everyone hears back on the media they gave, whatever
//! channel they filed on. It consumes `notifier.case-events` (case steps,
//! title expiry alerts, reports, appointments), plans one message per
//! medium in ONE transaction with the inbox, then sends what is due: e-mail
//! over SMTP with TLS, SMS through the provider, letters through the
//! mailroom's print list. Each message keeps its state (queued, sent,
//! delivered, failed), is retried with backoff, and is sent once per
//! (event, medium) however often the event is delivered.

pub mod code;
pub mod email;
pub mod event;
pub mod figures;
pub mod papers;
pub mod plan;
pub mod relay;
pub mod sender;
pub mod settings;
pub mod sms;
pub mod store;
pub mod templates;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use guichet_kit::bus::{Delivery, NOTIFIER_QUEUE, Subscription, consume_batches};
use guichet_kit::clock::SharedClock;
use guichet_kit::db::{Database, Migrations};
use guichet_kit::outbox::OutboxRelay;
use guichet_kit::service::{self, Listen, Running, Shared, StartError, Tasks};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{ErrorKind, ServiceError};
use guichet_proto::v1::notifier_server::{Notifier, NotifierServer};
use guichet_proto::{convert, v1 as pb};
use lettre::message::Mailbox;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::email::Mailer;
use crate::figures::{MediumStateLabels, NotifierFigures};
use crate::sender::Sender;
use crate::settings::NotifierSettings;
use crate::sms::{HttpSms, SmsProvider};
use crate::store::Store;

pub static MIGRATIONS: Migrations = Migrations {
    postgres: &[&POSTGRES],
    sqlite: &[&SQLITE],
};
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub const SCHEMA: &str = "notifier";

pub async fn start(
    config: &guichet_kit::Config,
    settings: &NotifierSettings,
    listen: impl Into<Listen>,
    shared: &Shared,
) -> Result<Running, StartError> {
    let base = service::prepare(config, SCHEMA, &MIGRATIONS, listen, &shared.metrics).await?;
    let db = base.db.clone();
    fn target(what: &str, e: &(dyn std::error::Error + 'static)) -> StartError {
        StartError::Target(what.to_string(), guichet_kit::error::error_chain(e))
    }
    let mailer = Mailer::new(
        settings.smtp_url.as_deref(),
        settings.smtp_allow_plaintext,
        config.data_dir.join("mail"),
    )
    .map_err(|e| target("GUICHET_SMTP_URL", &e))?;
    let from: Mailbox = settings
        .mail_from
        .parse()
        .map_err(|e| target("GUICHET_MAIL_FROM", &e))?;
    let sms = match settings.sms_url.as_deref() {
        Some(url) => SmsProvider::Http(
            HttpSms::new(
                url,
                &settings.sms_account,
                &settings.sms_token,
                &settings.sms_sender,
            )
            .map_err(|e| target("GUICHET_SMS_URL", &e))?,
        ),
        None => SmsProvider::Folder(config.data_dir.join("sms")),
    };
    let relay = OutboxRelay::new(db.clone(), shared.bus.clone(), config.outbox_batch)
        .with_metrics(shared.metrics.clone(), SCHEMA);
    let figures = NotifierFigures::of(&shared.metrics);
    let store = Store { db: db.clone() };
    let wake = Arc::new(Notify::new());
    let sender = Sender {
        store: store.clone(),
        mailer,
        from,
        sms,
        clock: shared.clock.clone(),
        retry_base: Duration::seconds(i64::from(settings.notify_retry_seconds.max(1))),
        figures: figures.clone(),
        wake: wake.clone(),
        relay: relay.waker(),
        links: Arc::new(
            guichet_kit::links::LinkKey::load(config.link_key.as_deref(), &config.data_dir)
                .map_err(|e| target("GUICHET_LINK_KEY", &e))?,
        ),
        keys: Arc::new(
            guichet_kit::seal::KeySet::load_or_create(
                &config.signing_keys_path(),
                shared.clock.now(),
            )
            .map_err(|e| target("GUICHET_SIGNING_KEYS", &e))?,
        ),
    };
    let sender_keys = sender.keys.clone();
    let codes = code::CodeSender {
        store: store.clone(),
        mailer: sender.mailer.clone(),
        from: sender.from.clone(),
        sms: sender.sms.clone(),
        clock: shared.clock.clone(),
        figures: sender.figures.clone(),
    };
    let mut tasks = Tasks::new();
    tasks.spawn("outbox relay", relay.run(shared.shutdown.clone()));
    tasks.spawn("sender", sender.run(shared.shutdown.clone()));
    tasks.spawn(
        "figures",
        observe_forever(
            store.clone(),
            figures,
            shared.clock.clone(),
            shared.shutdown.clone(),
        ),
    );
    let consumer = Consumer {
        db: db.clone(),
        clock: shared.clock.clone(),
        wake,
    };
    let bus = shared.bus.clone();
    let shutdown = shared.shutdown.clone();
    let prefetch = config.consumer_prefetch;
    tasks.spawn("consumer", async move {
        consume_batches(
            bus,
            Subscription::one_batch_at_a_time(NOTIFIER_QUEUE, "notifier", prefetch),
            shutdown,
            |batch| {
                let consumer = consumer.clone();
                async move { consumer.handle(batch).await }
            },
        )
        .await;
    });
    let papers = papers::Papers {
        store: store.clone(),
        keys: sender_keys,
        clock: shared.clock.clone(),
    };
    let routes = tonic::service::Routes::new(NotifierServer::new(NotifierService {
        store,
        codes,
        papers,
    }));
    Ok(base
        .serve(tasks, routes, "guichet.v1.Notifier", &shared.shutdown)
        .await)
}

/// Takes events off the queue into the table.
#[derive(Clone)]
struct Consumer {
    db: Database,
    clock: SharedClock,
    wake: Arc<Notify>,
}

impl Consumer {
    /// A delivery batch is recorded in one transaction (one commit for up
    /// to a prefetch of events, not one each); if that fails, each event on
    /// its own, so one that cannot be recorded does not hold back the rest.
    async fn handle(&self, batch: Vec<Delivery>) {
        let mut planned = Vec::with_capacity(batch.len());
        for delivery in &batch {
            match plan::plan(&delivery.routing_key, &delivery.body, self.clock.now()) {
                Ok(plan) => planned.push((delivery, plan)),
                Err(e) => {
                    // Retried up to the delivery limit, then dead-lettered
                    // with the rest for an operator.
                    tracing::warn!(routing_key = %delivery.routing_key, error = %e, "an event the notifier cannot read");
                    if let Err(e) = delivery.retry_later().await {
                        tracing::warn!(error = %e, "giving back an unreadable event failed");
                    }
                }
            }
        }
        let plans: Vec<&plan::Plan> = planned.iter().map(|(_, plan)| plan).collect();
        if self.record(&plans).await.is_ok() {
            for acked in Delivery::ack_all(planned.iter().map(|(d, _)| *d)).await {
                if let Err(e) = acked {
                    tracing::warn!(error = %e, "ack of an event failed");
                }
            }
            self.wake.notify_one();
            return;
        }
        for (delivery, plan) in &planned {
            let acked = match self.record(&[plan]).await {
                Ok(()) => delivery.ack().await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record the messages of an event yet; retrying");
                    tokio::time::sleep(StdDuration::from_millis(200)).await;
                    delivery.retry_later().await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "ack of an event failed");
            }
        }
        self.wake.notify_one();
    }

    /// Records the messages of `plans` in one transaction, in order.
    async fn record(&self, plans: &[&plan::Plan]) -> Result<(), sqlx::Error> {
        if plans
            .iter()
            .all(|p| p.notices.is_empty() && p.cancel_reminders.is_none())
        {
            return Ok(());
        }
        let now = self.clock.now();
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        // The messages of the events in a row are inserted together; those
        // before an appointment's step go in first, since the step reads
        // and cancels what is planned.
        let mut pending: Vec<&store::NewNotice> = Vec::new();
        for plan in plans {
            if plan.notices.is_empty() && plan.cancel_reminders.is_none() {
                continue;
            }
            if plan.appointment_step.is_some() || plan.cancel_reminders.is_some() {
                store::insert_all(&mut c, &std::mem::take(&mut pending), now).await?;
            }
            if let Some((appointment, at)) = &plan.appointment_step
                && store::later_step_planned(&mut c, appointment, *at).await?
            {
                tracing::info!(appointment = %appointment, "a step older than one already told: skipped");
                continue;
            }
            if let Some((appointment, keep)) = &plan.cancel_reminders {
                store::cancel_reminders(&mut c, appointment, keep).await?;
            }
            pending.extend(&plan.notices);
        }
        store::insert_all(&mut c, &pending, now).await?;
        tx.commit().await
    }
}

/// The gauges count notices of this many days: an alert clears once its
/// case is older (the figure is for what can still be acted on).
const FIGURES_WINDOW_DAYS: i64 = 30;
/// Messages in a final state are forgotten after this many days: each
/// keeps the event, personal data included.
pub const RETENTION_DAYS: i64 = 400;

/// Refreshes the gauges on `/metrics`, and forgets what is past keeping.
async fn observe_forever(
    store: Store,
    figures: NotifierFigures,
    clock: SharedClock,
    shutdown: Shutdown,
) {
    let mut last_purge: Option<chrono::DateTime<chrono::Utc>> = None;
    loop {
        let now = clock.now();
        let since = now - Duration::days(FIGURES_WINDOW_DAYS);
        if last_purge.is_none_or(|at| now - at >= Duration::hours(1)) {
            match store.purge(now - Duration::days(RETENTION_DAYS)).await {
                Ok(n) if n > 0 => tracing::info!(messages = n, "old messages forgotten"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot forget old messages yet"),
            }
            last_purge = Some(now);
        }
        if let Ok(rows) = store.counts(since).await {
            figures.by_state.clear();
            for (medium, state, n) in rows {
                figures
                    .by_state
                    .get_or_create(&MediumStateLabels { medium, state })
                    .set(n);
            }
        }
        if let Ok(n) = store
            .unreached(
                guichet_dossier::notice::NoticeKind::AttestationIssued,
                since,
            )
            .await
        {
            figures.attestations_unreached.set(n);
        }
        if let Ok(n) = store.lost(since).await {
            figures.notices_lost.set(n);
        }
        tokio::select! {
            _ = tokio::time::sleep(StdDuration::from_secs(15)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[derive(Clone)]
struct NotifierService {
    store: Store,
    codes: code::CodeSender,
    papers: papers::Papers,
}

/// A subject reference as the notifier takes it, or the refusal naming it.
fn subject_ref(text: &str) -> Result<&str, Status> {
    let subject = text.trim();
    if subject.is_empty() || subject.len() > 100 {
        return Err(ServiceError::on_field(
            ErrorKind::InvalidInput,
            "subject_ref",
            "is required: a dossier reference, a report id or an appointment id (100 characters at most)",
        )
        .to_status());
    }
    Ok(subject)
}

#[tonic::async_trait]
impl Notifier for NotifierService {
    async fn list_papers(
        &self,
        request: Request<pb::ListPapersRequest>,
    ) -> Result<Response<pb::ListPapersResponse>, Status> {
        let r = request.into_inner();
        let subject = subject_ref(&r.subject_ref)?;
        let papers =
            self.papers.list(subject).await.map_err(|e| {
                ServiceError::database("notifier", "listing documents", &e).to_status()
            })?;
        Ok(Response::new(pb::ListPapersResponse {
            papers: papers
                .into_iter()
                .map(|p| pb::PaperView {
                    id: p.id,
                    kind: p.kind,
                    title: p.title,
                    file_name: p.file_name,
                    issued_at: Some(convert::timestamp_to_pb(p.issued_at)),
                })
                .collect(),
        }))
    }

    async fn get_paper(
        &self,
        request: Request<pb::GetPaperRequest>,
    ) -> Result<Response<pb::PaperFile>, Status> {
        let r = request.into_inner();
        let subject = subject_ref(&r.subject_ref)?;
        let language = match r.language.trim() {
            "" => None,
            l => Some(guichet_dossier::Language::parse(l).ok_or_else(|| {
                ServiceError::on_field(ErrorKind::InvalidInput, "language", "is fr or en")
                    .to_status()
            })?),
        };
        let found = self
            .papers
            .pdf(subject, r.id.trim(), language)
            .await
            .map_err(|e| {
                ServiceError::database("notifier", "reading a document", &e).to_status()
            })?;
        let (file_name, content) = found.ok_or_else(|| {
            ServiceError::not_found(format!("no document {} for {subject}", r.id.trim()))
                .to_status()
        })?;
        Ok(Response::new(pb::PaperFile { file_name, content }))
    }

    async fn list_notices(
        &self,
        request: Request<pb::ListNoticesRequest>,
    ) -> Result<Response<pb::ListNoticesResponse>, Status> {
        let subject = request.into_inner().subject_ref;
        if subject.trim().is_empty() || subject.len() > 100 {
            return Err(ServiceError::on_field(
                ErrorKind::InvalidInput,
                "subject_ref",
                "is required: a dossier reference, a report id or an appointment id (100 characters at most)",
            )
            .to_status());
        }
        let rows = self
            .store
            .of_subject(subject.trim(), 500)
            .await
            .map_err(|e| ServiceError::database("notifier", "listing notices", &e).to_status())?;
        let ts = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(convert::timestamp_to_pb);
        let mut notices = Vec::with_capacity(rows.len());
        for r in rows {
            // Only ever counted up: a negative count is damaged data.
            let attempts = u32::try_from(r.attempts).map_err(|e| {
                ServiceError::internal("a notice's attempts cannot be read", &e).to_status()
            })?;
            notices.push(pb::NoticeView {
                kind: r.kind.to_string(),
                medium: r.medium.to_string(),
                state: r.state,
                failure: r.failure.unwrap_or_default(),
                attempts,
                created_at: ts(Some(r.created_at)),
                sent_at: ts(r.sent_at),
                delivered_at: ts(r.delivered_at),
                not_before: ts(Some(r.not_before)),
            });
        }
        Ok(Response::new(pb::ListNoticesResponse { notices }))
    }

    async fn send_code(
        &self,
        request: Request<pb::SendCodeRequest>,
    ) -> Result<Response<pb::SendCodeResponse>, Status> {
        let media = self
            .codes
            .send(request.into_inner())
            .await
            .map_err(|e| e.to_status())?;
        Ok(Response::new(pb::SendCodeResponse {
            media: media.iter().map(|m| m.as_str().to_string()).collect(),
        }))
    }
}
