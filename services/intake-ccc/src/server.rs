//! Start-up and the gRPC face of the call-centre service.

use std::time::Duration;

use guichet_dossier::desk::AppointmentState;
use guichet_dossier::filing::{RawProvenance, email_field, phone_field};
use guichet_dossier::signalement::{
    self, AlternativeKind, OfferedAlternative, OfferedAppointment, ReportState, ReportStep,
};
use guichet_dossier::{Channel, Violations};
use guichet_intake::{Intake, prepare_channel};
use guichet_kit::clock::SharedClock;
use guichet_kit::db::Migrations;
use guichet_kit::grpc::TracedChannel;
use guichet_kit::lease;
use guichet_kit::metrics::GaugeF64;
use guichet_kit::service::{Listen, Running, Shared, StartError, Tasks, client_channel};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Config, ErrorKind, Metrics, ServiceError};
use guichet_proto::v1::call_centre_server::{CallCentre, CallCentreServer};
use guichet_proto::v1::desk_client::DeskClient;
use guichet_proto::v1::instruction_reader_client::InstructionReaderClient;
use guichet_proto::{convert, v1 as pb};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Unit;
use tonic::{Request, Response, Status};

use crate::reports::{self, NewReport, ReportError, Reports, StepChange};
use crate::settings::CallCentreSettings;

/// Both backends' migrations, in order (the schema parity test compares them).
pub static MIGRATIONS: Migrations = Migrations {
    postgres: &[&guichet_intake::POSTGRES, &POSTGRES],
    sqlite: &[&guichet_intake::SQLITE, &SQLITE],
};
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub const SCHEMA: &str = "intake_ccc";
/// Longest wait for the desk service to say what an appointment is.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// `instruction_url`: where status look-ups are answered; `desk_url`: where
/// the appointments offered to reports are checked.
pub async fn start(
    config: &Config,
    settings: &CallCentreSettings,
    listen: impl Into<Listen>,
    instruction_url: &str,
    desk_url: &str,
    shared: &Shared,
) -> Result<Running, StartError> {
    let channel =
        prepare_channel(config, SCHEMA, &MIGRATIONS, listen, shared, Channel::Ccc).await?;
    let service = CallCentreService {
        intake: channel.intake.clone(),
        reports: Reports::new(channel.db.clone()),
        instruction: InstructionReaderClient::new(client_channel(instruction_url)?),
        desk: DeskClient::new(client_channel(desk_url)?),
        deadline_days: settings.report_deadline_days,
    };
    let mut tasks = Tasks::new();
    tasks.spawn(
        "report deadlines",
        watch_deadlines(
            service.clone(),
            Duration::from_secs(config.sweep_interval_s.max(1)),
            shared.shutdown.clone(),
        ),
    );
    let routes = tonic::service::Routes::new(CallCentreServer::new(service));
    Ok(channel
        .with_relay(&mut tasks, &shared.shutdown)
        .serve(tasks, routes, "guichet.v1.CallCentre", &shared.shutdown)
        .await)
}

#[derive(Clone)]
struct CallCentreService {
    intake: Intake,
    reports: Reports,
    instruction: InstructionReaderClient<TracedChannel>,
    desk: DeskClient<TracedChannel>,
    deadline_days: u32,
}

impl CallCentreService {
    fn clock(&self) -> &SharedClock {
        &self.intake.clock
    }

    fn metrics(&self) -> &Metrics {
        &self.intake.metrics
    }

    async fn report_pb(&self, row: &reports::ReportRow) -> Result<pb::Report, Status> {
        let events = self.reports.events(&row.id).await.map_err(err)?;
        Ok(reports::to_pb(row, &events, self.clock().today()))
    }

    async fn report_row(&self, id: &str) -> Result<reports::ReportRow, Status> {
        self.reports
            .get(id)
            .await
            .map_err(err)?
            .ok_or_else(|| Status::from(ServiceError::not_found(format!("no report {id}"))))
    }

    /// The appointment as the desk service knows it; `None` when it knows
    /// no such appointment. Unreachable: UNAVAILABLE, never a guess.
    async fn appointment(&self, id: &str) -> Result<Option<pb::Appointment>, Status> {
        let mut request = Request::new(pb::GetAppointmentRequest { id: id.to_string() });
        request.set_timeout(PEER_TIMEOUT);
        match self.desk.clone().get_appointment(request).await {
            Ok(a) => Ok(Some(a.into_inner())),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(desk_error(&status)),
        }
    }

    /// Refuses to offer an appointment that the desk service does not know,
    /// that is no longer to come, that is at another prefecture's site, or
    /// that was not booked for this report.
    async fn check_offered_appointment(
        &self,
        report: &reports::ReportRow,
        appointment_id: &str,
    ) -> Result<(), Status> {
        let Some(a) = self.appointment(appointment_id).await? else {
            return Err(ServiceError::on_field(
                ErrorKind::NotFound,
                "appointment_id",
                "names no appointment at the desk service",
            )
            .into());
        };
        let state = appointment_state(a.state);
        signalement::check_offered_appointment(
            &report.id,
            &report.prefecture,
            OfferedAppointment {
                state,
                report_id: &a.report_id,
                site_prefecture: &a.prefecture,
            },
        )
        .map_err(|why| {
            ServiceError::on_field(ErrorKind::WrongState, "appointment_id", why.to_string()).into()
        })
    }

    /// Refuses to close a report whose alternative does not stand: its
    /// appointment gone or cancelled, or a kit with no address.
    async fn check_alternative_stands(&self, report: &reports::ReportRow) -> Result<(), Status> {
        if report.state != ReportState::AlternativeOffered {
            // Nothing to close on (or closed already): the step says so.
            return Ok(());
        }
        let alternative = match *report.alternative_kind {
            Some(AlternativeKind::PanAppointment) => {
                let a = match report.appointment_id.as_deref() {
                    Some(id) if !id.is_empty() => self.appointment(id).await?,
                    _ => None,
                };
                OfferedAlternative::Appointment(a.map(|a| appointment_state(a.state)))
            }
            Some(AlternativeKind::PaperKit) => OfferedAlternative::PaperKit {
                addressed: report
                    .kit_sent_to
                    .as_ref()
                    .is_some_and(|a| missing_address_lines(a).is_empty()),
            },
            None => return Ok(()),
        };
        signalement::check_alternative_stands(alternative).map_err(|gone| {
            ServiceError::on_field(ErrorKind::WrongState, gone.field(), gone.to_string()).into()
        })
    }

    /// Refreshes the report figures on `/metrics`.
    async fn sample(&self) -> Result<(), ReportError> {
        for f in self.reports.figures(self.clock().today()).await? {
            let labels = PrefectureLabels {
                prefecture: f.prefecture,
            };
            let m = ReportFigures::of(self.metrics());
            m.waiting.get_or_create(&labels).set(f.waiting);
            m.overdue.get_or_create(&labels).set(f.overdue);
            if let Some(s) = f.median_seconds_to_alternative {
                m.time_to_alternative.get_or_create(&labels).set(s);
            }
        }
        Ok(())
    }
}

/// Escalates reports past their deadline and refreshes the figures, at
/// start and then every `every`.
/// With several instances, one escalates at a time (the lease); escalating
/// stays safe to repeat, a report already escalated being left alone. Every
/// instance samples its own figures.
async fn watch_deadlines(service: CallCentreService, every: Duration, shutdown: Shutdown) {
    let service = &service;
    lease::in_rounds(
        service.reports.db().clone(),
        "report-deadlines",
        every,
        shutdown,
        |held| async move {
            if held {
                let (now, today) = (service.clock().now(), service.clock().today());
                match service.reports.escalate_overdue(now, today).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(escalated = n, "reports past their deadline escalated"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot escalate overdue reports, will retry")
                    }
                }
            }
            if let Err(e) = service.sample().await {
                tracing::debug!(error = %e, "cannot sample the report figures");
            }
        },
    )
    .await;
}

fn invalid(field: &str, problem: &str) -> Status {
    ServiceError::invalid(Violations::one(field, problem)).into()
}

fn err(e: ReportError) -> Status {
    ServiceError::from(e).into()
}

impl From<ReportError> for ServiceError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::NotFound(id) => ServiceError::not_found(format!("no report {id}")),
            ReportError::WrongState(why) => ServiceError::new(ErrorKind::WrongState, why),
            ReportError::KeyReused => ServiceError::conflict(
                "this idempotency key was already used for a different report; \
                 use a new key for a new report",
            ),
            ReportError::Unreadable(e) => ServiceError::internal("reading a report", &e),
            ReportError::Db(e) => ServiceError::database("the call-centre service", "a report", &e),
        }
    }
}

/// An appointment's state as the desk service gave it, in words.
fn appointment_state(wire: i32) -> &'static str {
    convert::appointment_state_from_pb(wire).map_or("unknown", AppointmentState::as_str)
}

/// The desk service said something other than "no such appointment".
fn desk_error(status: &Status) -> Status {
    use tonic::Code;
    match status.code() {
        // No answer from the service itself (refused, cut, timed out): the
        // status then carries the transport's error as its source.
        code if matches!(
            code,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        ) || std::error::Error::source(status).is_some() =>
        {
            tracing::warn!(code = ?status.code(), message = status.message(), "the desk service cannot be reached");
            ServiceError::unavailable(
                "the desk service cannot be reached to check appointment_id; try again",
            )
            .into()
        }
        code => {
            tracing::error!(
                ?code,
                message = status.message(),
                "the desk service refused an appointment look-up"
            );
            ServiceError::new(ErrorKind::Internal, "internal error").into()
        }
    }
}

/// The lines a kit's address lacks to be posted.
fn missing_address_lines(a: &pb::PostalAddress) -> Vec<&'static str> {
    [
        ("line1", &a.line1),
        ("postal_code", &a.postal_code),
        ("city", &a.city),
    ]
    .into_iter()
    .filter(|(_, v)| v.trim().is_empty())
    .map(|(k, _)| k)
    .collect()
}

fn is_blank(a: &pb::PostalAddress) -> bool {
    [&a.line1, &a.line2, &a.postal_code, &a.city, &a.country]
        .iter()
        .all(|v| v.trim().is_empty())
}

/// Where a kit goes: the address given with the offer, or else the one the
/// report holds. Either must be whole, or the field is named.
fn kit_address(
    v: &mut Violations,
    given: Option<pb::PostalAddress>,
    report: &reports::ReportRow,
) -> Option<pb::PostalAddress> {
    match given.filter(|a| !is_blank(a)) {
        Some(a) => {
            let missing = missing_address_lines(&a);
            for line in &missing {
                v.add(format!("kit_sent_to.{line}"), "is required to post the kit");
            }
            missing.is_empty().then(|| trimmed(a))
        }
        None => {
            let on_file = report
                .contact
                .address
                .clone()
                .filter(|a| missing_address_lines(a).is_empty());
            if on_file.is_none() {
                v.add(
                    "kit_sent_to",
                    "is required: the report holds no full postal address (street, postal code \
                     and city) to post the kit to",
                );
            }
            on_file.map(trimmed)
        }
    }
}

fn trimmed(a: pb::PostalAddress) -> pb::PostalAddress {
    pb::PostalAddress {
        line1: a.line1.trim().to_string(),
        line2: a.line2.trim().to_string(),
        postal_code: a.postal_code.trim().to_string(),
        city: a.city.trim().to_string(),
        country: a.country.trim().to_string(),
    }
}

fn required(v: &mut Violations, field: &str, value: &str) -> String {
    let value = value.trim();
    if value.is_empty() {
        v.add(field, "is required");
    }
    value.to_string()
}

#[tonic::async_trait]
impl CallCentre for CallCentreService {
    async fn file_on_behalf(
        &self,
        request: Request<pb::FileOnBehalfRequest>,
    ) -> Result<Response<pb::FileOnBehalfResponse>, Status> {
        let r = request.into_inner();
        let filing = r.filing.ok_or_else(|| invalid("filing", "is required"))?;
        let (raw, _) = convert::raw_filing_from_pb(&filing);
        let provenance = RawProvenance::Ccc {
            agent_id: Some(r.agent_id),
            call_id: Some(r.call_id),
            consent_recorded: r.consent_recorded,
        };
        let accepted = self.intake.accept(&raw, &provenance).await?;
        Ok(Response::new(pb::FileOnBehalfResponse {
            receipt: Some(accepted.receipt),
            created: accepted.created,
            trace_id: accepted.trace_id,
        }))
    }

    async fn open_report(
        &self,
        request: Request<pb::OpenReportRequest>,
    ) -> Result<Response<pb::Report>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let category = convert::report_category_from_pb(r.category);
        if category.is_none() {
            v.add(
                "category",
                "is required: cannot_create_account, upload_fails, appointment_impossible, \
                 two_procedures_at_once, no_receipt or other",
            );
        }
        let what_was_tried = required(&mut v, "what_was_tried", &r.what_was_tried);
        let family_name = required(&mut v, "family_name", &r.family_name);
        let agent_id = required(&mut v, "agent_id", &r.agent_id);
        let idempotency_key = required(&mut v, "idempotency_key", &r.idempotency_key);
        let mut contact = r.contact.unwrap_or_default();
        if contact.phone.trim().is_empty() && contact.email.trim().is_empty() {
            v.add(
                "contact",
                "a phone number or an e-mail address is needed to reach the person back",
            );
        }
        // A number or address the notifier cannot use would reach nobody,
        // silently: refused here, as the filings and the bookings refuse it.
        // A refused one stays as typed: the violation refuses the report.
        if !contact.phone.trim().is_empty()
            && let Some(phone) = phone_field(&mut v, "contact.phone", &contact.phone)
        {
            contact.phone = phone;
        }
        if !contact.email.trim().is_empty()
            && let Some(email) = email_field(&mut v, "contact.email", contact.email.trim())
        {
            contact.email = email;
        }
        let postal_code = contact
            .address
            .as_ref()
            .map(|a| a.postal_code.trim().to_string())
            .unwrap_or_default();
        let prefecture = guichet_dossier::prefecture::department_of_postal_code(&postal_code);
        if prefecture.is_none() {
            v.add(
                "contact.address.postal_code",
                "a French postal code of residence is needed: it decides which prefecture answers",
            );
        }
        // Optional; a number no procedure has is refused, never kept.
        let procedure = convert::procedure_from_pb(r.procedure);
        if r.procedure != 0 && procedure.is_none() {
            v.add("procedure", "is not a procedure");
        }
        let (Some(category), Some(prefecture)) = (category, prefecture) else {
            return Err(ServiceError::invalid(v).into());
        };
        if !v.is_empty() {
            return Err(ServiceError::invalid(v).into());
        }
        let now = self.clock().now();
        let today = self.clock().today();
        let deadline = signalement::deadline(today, self.deadline_days, &prefecture);
        let new = NewReport {
            id: uuid::Uuid::now_v7().to_string(),
            idempotency_key,
            category,
            what_was_tried,
            family_name,
            given_names: r.given_names.trim().to_string(),
            contact,
            procedure,
            prefecture,
            opened_by: agent_id,
            call_id: r.call_id,
            deadline,
        };
        let row = self
            .reports
            .open(new, now, today)
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(report = %row.id, prefecture = %row.prefecture, deadline = %row.deadline, "report opened");
        Ok(Response::new(self.report_pb(&row).await?))
    }

    async fn get_report(
        &self,
        request: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::Report>, Status> {
        let id = request.into_inner().id;
        let row = self.report_row(&id).await?;
        Ok(Response::new(self.report_pb(&row).await?))
    }

    async fn list_reports(
        &self,
        request: Request<pb::ListReportsRequest>,
    ) -> Result<Response<pb::ListReportsResponse>, Status> {
        let r = request.into_inner();
        let state = pb::ReportState::try_from(r.state)
            .map_err(|_| invalid("state", "is not a report state"))?;
        let limit = i64::from(if r.limit == 0 { 100 } else { r.limit.min(1000) });
        let rows = self
            .reports
            .list(
                &r.prefecture,
                convert::report_state_from_pb(state as i32),
                limit,
            )
            .await
            .map_err(err)?;
        let today = self.clock().today();
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if r.overdue_only && !signalement::is_overdue(row.state, row.deadline, today) {
                continue;
            }
            out.push(self.report_pb(&row).await?);
        }
        Ok(Response::new(pb::ListReportsResponse { reports: out }))
    }

    async fn offer_alternative(
        &self,
        request: Request<pb::OfferAlternativeRequest>,
    ) -> Result<Response<pb::Report>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let agent_id = required(&mut v, "agent_id", &r.agent_id);
        let kind = convert::alternative_kind_from_pb(r.kind);
        let appointment_id = match kind {
            Some(AlternativeKind::PanAppointment) => {
                required(&mut v, "appointment_id", &r.appointment_id)
            }
            Some(AlternativeKind::PaperKit) => String::new(),
            None => {
                v.add("kind", "is required: pan_appointment or paper_kit");
                String::new()
            }
        };
        if !v.is_empty() {
            return Err(ServiceError::invalid(v).into());
        }
        let report = self.report_row(&r.id).await?;
        // Said before anything is asked of the desk: a closed report takes
        // no offer whatever it is.
        signalement::next_state(report.state, ReportStep::OfferAlternative).map_err(|why| {
            Status::from(ServiceError::new(ErrorKind::WrongState, why.to_string()))
        })?;
        let change = if kind == Some(AlternativeKind::PanAppointment) {
            self.check_offered_appointment(&report, &appointment_id)
                .await?;
            StepChange::Offer {
                kind: AlternativeKind::PanAppointment,
                appointment_id: Some(appointment_id),
                kit_sent_to: None,
            }
        } else {
            let address = kit_address(&mut v, r.kit_sent_to, &report);
            let Some(address) = address.filter(|_| v.is_empty()) else {
                return Err(ServiceError::invalid(v).into());
            };
            StepChange::Offer {
                kind: AlternativeKind::PaperKit,
                appointment_id: None,
                kit_sent_to: Some(address),
            }
        };
        let row = self
            .reports
            .step(
                &r.id,
                ReportStep::OfferAlternative,
                change,
                &agent_id,
                self.clock().now(),
                self.clock().today(),
            )
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(self.report_pb(&row).await?))
    }

    async fn record_outcome(
        &self,
        request: Request<pb::RecordOutcomeRequest>,
    ) -> Result<Response<pb::Report>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let agent_id = required(&mut v, "agent_id", &r.agent_id);
        let outcome = convert::report_outcome_from_pb(r.outcome);
        if outcome.is_none() {
            v.add("outcome", "is required: filed, declined or unreachable");
        }
        let Some(outcome) = outcome.filter(|_| v.is_empty()) else {
            return Err(ServiceError::invalid(v).into());
        };
        let report = self.report_row(&r.id).await?;
        self.check_alternative_stands(&report).await?;
        let row = self
            .reports
            .step(
                &r.id,
                ReportStep::Close,
                StepChange::Close {
                    outcome,
                    note: r.note,
                },
                &agent_id,
                self.clock().now(),
                self.clock().today(),
            )
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(self.report_pb(&row).await?))
    }

    async fn look_up_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::StatusView>, Status> {
        // Instruction checks the birth date and answers; the call centre
        // passes the deadline and the trace along.
        let mut client = self.instruction.clone();
        client.get_status(request).await
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrefectureLabels {
    prefecture: String,
}

/// The call centre's own figures on `/metrics`, per prefecture.
struct ReportFigures {
    waiting: Family<PrefectureLabels, Gauge>,
    overdue: Family<PrefectureLabels, Gauge>,
    time_to_alternative: Family<PrefectureLabels, GaugeF64>,
}

impl ReportFigures {
    fn of(m: &Metrics) -> Self {
        ReportFigures {
            waiting: m.family(
                "reports_open",
                "Blocked-user reports still waiting for an alternative",
                None,
            ),
            overdue: m.family(
                "reports_overdue",
                "Blocked-user reports past their deadline without an alternative",
                None,
            ),
            time_to_alternative: m.family(
                "report_time_to_alternative_median",
                "Median time from a blocked-user report to the alternative offered",
                Some(Unit::Seconds),
            ),
        }
    }
}
