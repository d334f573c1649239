//! The instruction service over gRPC: what a person may read of their file
//! (`InstructionReader`), and what agents do (`InstructionDesk`).

use std::sync::Arc;

use chrono::NaiveDate;
use guichet_dossier::filing::RawDocument;
use guichet_dossier::{
    CaseState, Channel, DocumentKind, Motif, Procedure, Reference, Step, UrgencyClass, Violations,
};
use guichet_dossier::{calendar, evaluation, rights};
use guichet_kit::clock::SharedClock;
use guichet_kit::{ErrorKind, ServiceError};
use guichet_proto::v1::instruction_desk_server::InstructionDesk;
use guichet_proto::v1::instruction_reader_server::InstructionReader;
use guichet_proto::{convert, v1 as pb};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::cases::{self, MIN_DECISIONS_FOR_ESTIMATE, percentile};
use crate::store::{
    AttestationRow, CaseError, CaseRow, CaseSnapshot, CodedAttestation, DocumentRow, EventRow,
    QueueFilter, StepDetails, Store,
};

const MAX_QUEUE_PAGE: u32 = 500;
/// Decisions older than this do not count towards delay estimates.
const ESTIMATE_WINDOW_DAYS: i64 = 365;

#[derive(Clone)]
pub struct Api {
    pub store: Store,
    pub clock: SharedClock,
    /// Pokes the events relay after a change wrote to the outbox.
    pub wake: Arc<Notify>,
    pub equity: crate::equity::EquitySettings,
    /// The open data's minimum count (statistical secrecy).
    pub open_data_min_count: u32,
    /// Each year's evaluation, as computed on its day: recomputed on the
    /// first request of a new day.
    pub evaluations: Arc<tokio::sync::Mutex<std::collections::HashMap<i32, pb::EvaluationReport>>>,
}

fn db_error(context: &str, e: &sqlx::Error) -> Status {
    ServiceError::database("instruction", context, e).into()
}

fn case_error(e: CaseError) -> Status {
    match e {
        CaseError::NotFound(r) => {
            ServiceError::not_found(format!("no dossier {r} in instruction")).into()
        }
        CaseError::Impossible(i) => ServiceError::new(ErrorKind::WrongState, i.to_string()).into(),
        CaseError::Invalid(m) => ServiceError::new(ErrorKind::WrongState, m).into(),
        CaseError::Unreadable(e) => unreadable(&e),
        CaseError::NotHeld { .. } => ServiceError::new(ErrorKind::WrongState, e.to_string()).into(),
        CaseError::Db(e) => db_error("changing a case", &e),
    }
}

/// Stored data this service cannot read back: an internal error, logged with
/// what is wrong, never shown as a plausible value.
fn unreadable(e: &cases::Unreadable) -> Status {
    ServiceError::internal("reading a stored dossier", e).into()
}

fn invalid(field: &str, problem: impl Into<String>) -> Status {
    ServiceError::invalid(Violations::one(field, problem)).into()
}

fn not_in_instruction(reference: &Reference) -> Status {
    ServiceError::not_found(format!("no dossier {reference} in instruction")).into()
}

fn parse_reference(s: &str) -> Result<Reference, Status> {
    Reference::parse(s).map_err(|e| invalid("reference", e.to_string()))
}

fn agent(id: &str, field: &str) -> Result<String, Status> {
    let id = id.trim();
    if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) {
        return Err(invalid(
            field,
            "is required: who does this (1 to 64 characters)",
        ));
    }
    Ok(id.to_string())
}

/// A wire enum used as a filter: `None` when unset (0), the domain value
/// when known, and INVALID_ARGUMENT naming `field` for a number that is no
/// value: an unknown filter is refused, never read as "any".
fn enum_filter<T>(
    field: &str,
    value: i32,
    text: fn(i32) -> Option<String>,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, Status> {
    match text(value) {
        None => Ok(None),
        Some(code) => parse(&code)
            .map(Some)
            .ok_or_else(|| invalid(field, format!("{value} is not a known value"))),
    }
}

/// A wire channel's code; an unknown number as itself, to be refused.
fn channel_text(value: i32) -> Option<String> {
    (value != 0).then(|| {
        pb::Channel::try_from(value)
            .ok()
            .and_then(convert::channel_from_pb)
            .map_or_else(|| value.to_string(), |c| c.as_str().to_string())
    })
}

/// A wire case state's code; an unknown number as itself, to be refused.
fn state_text(value: i32) -> Option<String> {
    (value != 0).then(|| {
        convert::case_state_from_pb(value)
            .map_or_else(|| value.to_string(), |s| s.as_str().to_string())
    })
}

fn document_kind_of(value: i32) -> Option<DocumentKind> {
    DocumentKind::parse(&convert::document_kind_text(value)?)
}

fn urgency_to_pb(u: UrgencyClass) -> pb::UrgencyClass {
    match u {
        UrgencyClass::Critical => pb::UrgencyClass::Critical,
        UrgencyClass::Soon => pb::UrgencyClass::Soon,
        UrgencyClass::Routine => pb::UrgencyClass::Routine,
    }
}

impl Api {
    fn wake_relay(&self) {
        self.wake.notify_one();
    }

    async fn row(&self, reference: &Reference) -> Result<CaseRow, Status> {
        self.store
            .case(reference.as_str())
            .await
            .map_err(|e| db_error("reading a dossier", &e))?
            .ok_or_else(|| not_in_instruction(reference))
    }

    async fn snapshot(&self, reference: &str) -> Result<Option<CaseSnapshot>, Status> {
        self.store
            .snapshot(reference)
            .await
            .map_err(|e| db_error("reading a dossier", &e))
    }

    fn dossier_view(&self, row: &CaseRow, events: Vec<EventRow>) -> pb::DossierView {
        let urgency = UrgencyClass::for_cover(row.cover_until, self.clock.today());
        pb::DossierView {
            dossier: Some(row.dossier.clone()),
            state: cases::state_to_pb(row.state) as i32,
            urgency: urgency_to_pb(urgency) as i32,
            events: events
                .into_iter()
                .map(|e| pb::DossierEvent {
                    sequence: e.id as u64,
                    kind: e.kind,
                    actor: e.actor,
                    at: Some(convert::timestamp_to_pb(e.at)),
                    reason: e.reason,
                    trace_id: e.trace_id,
                })
                .collect(),
            recorded_at: Some(convert::timestamp_to_pb(row.recorded_at)),
        }
    }

    /// The days since the title expired that nothing covered, from the
    /// attestations actually issued and what the case went through.
    fn uncovered(
        &self,
        row: &CaseRow,
        events: &[EventRow],
        attestations: &[AttestationRow],
    ) -> Result<Vec<pb::Period>, Status> {
        let facts = row.facts(row.state).map_err(|e| unreadable(&e))?;
        let history = rights::CaseHistory::of(
            events
                .iter()
                .map(|e| (e.kind.as_str(), calendar::paris_date(e.at))),
        );
        // Every step writes its event in the step's own transaction: a
        // decided case without one is damaged, and its past cannot be told.
        if !row.state.is_open() && history.left_open_on.is_none() {
            return Err(unreadable(&cases::Unreadable::new(
                &row.reference,
                format!("{} with no event of leaving the open states", row.state),
            )));
        }
        let issued: Vec<_> = attestations
            .iter()
            .map(AttestationRow::attestation)
            .collect();
        Ok(
            rights::uncovered_periods(&facts, &history, &issued, self.clock.today())
                .into_iter()
                .map(|(from, until)| pb::Period {
                    from: Some(convert::date_to_pb(from)),
                    until: Some(convert::date_to_pb(until)),
                })
                .collect(),
        )
    }

    async fn case_view(&self, reference: &Reference) -> Result<pb::CaseView, Status> {
        let CaseSnapshot {
            row,
            events,
            attestations,
            linked,
            near_matches,
            documents,
        } = self
            .snapshot(reference.as_str())
            .await?
            .ok_or_else(|| not_in_instruction(reference))?;
        Ok(pb::CaseView {
            documents: receipts(&row, &documents),
            missing: row
                .missing()
                .map_err(|e| unreadable(&e))?
                .into_iter()
                .map(convert::document_kind_to_pb)
                .collect(),
            documents_deadline: row.documents_deadline.map(convert::date_to_pb),
            cover: Some(cases::cover_from_columns(
                row.cover_until,
                row.cover_basis.as_deref(),
            )),
            uncovered: self.uncovered(&row, &events, &attestations)?,
            attestations: attestations.iter().map(|a| a.to_pb()).collect(),
            linked_to: row.linked_to.clone().unwrap_or_default(),
            link_confirmed: row.link_confirmed,
            linked,
            near_matches,
            taken_by: row.taken_by.clone().unwrap_or_default(),
            queue_date: row.queue_date.map(convert::date_to_pb),
            dossier: Some(self.dossier_view(&row, events)),
        })
    }

    async fn step(
        &self,
        reference: &Reference,
        step: Step,
        details: StepDetails,
    ) -> Result<Response<pb::CaseView>, Status> {
        self.store
            .step(
                reference.as_str(),
                step,
                &details,
                self.clock.now(),
                self.clock.today(),
            )
            .await
            .map_err(case_error)?;
        self.wake_relay();
        Ok(Response::new(self.case_view(reference).await?))
    }
}

#[tonic::async_trait]
impl InstructionReader for Api {
    async fn get_dossier(
        &self,
        request: Request<pb::GetDossierRequest>,
    ) -> Result<Response<pb::DossierView>, Status> {
        let reference = parse_reference(&request.into_inner().reference)?;
        let snapshot = self
            .snapshot(reference.as_str())
            .await?
            .ok_or_else(|| not_in_instruction(&reference))?;
        Ok(Response::new(
            self.dossier_view(&snapshot.row, snapshot.events),
        ))
    }

    async fn list_queue(
        &self,
        request: Request<pb::ListQueueRequest>,
    ) -> Result<Response<pb::ListQueueResponse>, Status> {
        let r = request.into_inner();
        let limit = match r.limit {
            0 => 50,
            n => n.min(MAX_QUEUE_PAGE),
        };
        let filter = QueueFilter {
            prefecture: (!r.prefecture.is_empty()).then(|| r.prefecture.clone()),
            procedure: enum_filter(
                "procedure",
                r.procedure,
                convert::procedure_text,
                Procedure::parse,
            )?,
            motif: enum_filter("motif", r.motif, convert::motif_text, Motif::parse)?,
            channel: enum_filter("channel", r.channel, channel_text, Channel::parse)?,
            state: enum_filter("state", r.state, state_text, CaseState::parse)?,
            // A date that is no date is refused, not read as "no filter".
            cover_ends_before: convert::request_date(
                "cover_ends_before",
                r.cover_ends_before.as_ref(),
            )
            .map_err(|v| Status::from(ServiceError::invalid(v)))?,
            urgency: enum_filter(
                "urgency",
                r.urgency,
                convert::urgency_text,
                UrgencyClass::parse,
            )?,
        };
        let rows = self
            .store
            .queue(&filter, i64::from(limit), self.clock.today())
            .await
            .map_err(|e| db_error("reading the queue", &e))?;
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            let linked = self
                .store
                .linked(&r.reference)
                .await
                .map_err(|e| db_error("reading linked filings", &e))?;
            entries.push(pb::QueueEntry {
                channel: convert::channel_to_pb(r.channel) as i32,
                procedure: convert::procedure_to_pb(r.procedure),
                motif: convert::motif_to_pb(r.motif),
                prefecture: r.prefecture,
                legal_filing_date: Some(convert::date_to_pb(r.legal_filing_date)),
                urgency: urgency_to_pb(UrgencyClass::from_rank(r.urgency)) as i32,
                state: cases::state_to_pb(r.state) as i32,
                title_expires_on: r.title_expires_on.map(convert::date_to_pb),
                queue_date: r.queue_date.map(convert::date_to_pb),
                cover_until: r.cover_until.map(convert::date_to_pb),
                taken_by: r.taken_by.unwrap_or_default(),
                linked,
                reference: r.reference,
            });
        }
        Ok(Response::new(pb::ListQueueResponse { entries }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::StatusView>, Status> {
        let r = request.into_inner();
        let reference = parse_reference(&r.reference)?;
        let birth_date = r
            .birth_date
            .as_ref()
            .and_then(convert::date_from_pb)
            .ok_or_else(|| invalid("birth_date", "is required, as an identity check"))?;
        // Same answer for a wrong birth date as for no such file: the
        // reference alone must not reveal that a file exists.
        let not_found = || {
            Status::from(ServiceError::not_found(
                "no dossier matches this reference and birth date",
            ))
        };
        let row = self
            .store
            .case(reference.as_str())
            .await
            .map_err(|e| db_error("reading a dossier", &e))?;
        let row = row.ok_or_else(not_found)?;
        let filed_birth = row
            .dossier
            .filing
            .as_ref()
            .and_then(|f| f.applicant.as_ref())
            .and_then(|a| a.birth_date.as_ref())
            .and_then(convert::date_from_pb);
        if filed_birth != Some(birth_date) {
            return Err(not_found());
        }
        let today = self.clock.today();
        // A linked filing stands where its first filing stands. What the
        // person is told of that place (state, cover, attestations) is read
        // in one snapshot.
        let primary = row.linked_to.as_deref().unwrap_or(&row.reference);
        let CaseSnapshot {
            row: place,
            events: place_events,
            attestations,
            mut linked,
            documents,
            ..
        } = self.snapshot(primary).await?.ok_or_else(|| {
            // The foreign key makes this impossible; say so if it happens.
            tracing::error!(reference = %row.reference, %primary, "linked to a missing dossier");
            Status::from(ServiceError::new(ErrorKind::Internal, "internal error"))
        })?;
        let files_ahead = if place.state.is_open() {
            self.store
                .files_ahead(&place, today)
                .await
                .map_err(|e| db_error("reading the queue", &e))?
        } else {
            0
        };
        let since = self.clock.now() - chrono::Duration::days(ESTIMATE_WINDOW_DAYS);
        let decided = self
            .store
            .decision_days(Some(place.procedure.as_str()), &place.prefecture, since)
            .await
            .map_err(|e| db_error("reading decisions", &e))?;
        let days: Vec<i64> = decided.into_iter().map(|(_, d)| d).collect();
        let estimate = if days.len() >= MIN_DECISIONS_FOR_ESTIMATE {
            percentile(&days, 80).unwrap_or(0)
        } else {
            0
        };
        if place.reference != row.reference {
            linked.retain(|l| *l != row.reference);
            linked.push(place.reference.clone());
        }
        let uncovered = self.uncovered(&place, &place_events, &attestations)?;
        let holder = holder_of(&row.dossier);
        Ok(Response::new(pb::StatusView {
            documents: receipts(&place, &documents),
            holder: Some(holder),
            reference: row.reference.clone(),
            state: cases::state_to_pb(row.state) as i32,
            uncovered,
            missing: place
                .missing()
                .map_err(|e| unreadable(&e))?
                .into_iter()
                .map(convert::document_kind_to_pb)
                .collect(),
            documents_deadline: place.documents_deadline.map(convert::date_to_pb),
            cover: Some(cases::cover_from_columns(
                place.cover_until,
                place.cover_basis.as_deref(),
            )),
            attestations: attestations.iter().map(|a| a.to_pb()).collect(),
            files_ahead: u32::try_from(files_ahead).unwrap_or(u32::MAX),
            estimated_days_to_decision: u32::try_from(estimate).unwrap_or(0),
            decisions_observed: u32::try_from(days.len()).unwrap_or(u32::MAX),
            legal_filing_date: Some(convert::date_to_pb(row.legal_filing_date)),
            channel: row.dossier.channel,
            linked,
        }))
    }

    async fn verify_attestation(
        &self,
        request: Request<pb::VerifyAttestationRequest>,
    ) -> Result<Response<pb::AttestationCheck>, Status> {
        let code = request
            .into_inner()
            .verification_code
            .trim()
            .to_ascii_uppercase();
        if code.len() != 8 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(invalid(
                "verification_code",
                "is the eight characters printed on the attestation",
            ));
        }
        let found = self
            .store
            .attestation_by_code(&code)
            .await
            .map_err(|e| db_error("reading an attestation", &e))?;
        let Some(CodedAttestation {
            reference,
            attestation,
        }) = found
        else {
            return Err(
                ServiceError::not_found("no attestation has this verification code").into(),
            );
        };
        let today = self.clock.today();
        let row = self.row(&parse_reference(&reference)?).await?;
        // A favourable-decision attestation stands until the card is handed
        // over; the others until their end date, while the file is not closed
        // against the person.
        let dated_ok =
            attestation.valid_from <= today && attestation.valid_until.is_none_or(|u| today <= u);
        let state_ok = row.state != CaseState::Unfavourable && row.state != CaseState::Closed;
        Ok(Response::new(pb::AttestationCheck {
            valid_today: dated_ok && state_ok,
            reference,
            attestation: Some(attestation.to_pb()),
            holder: Some(holder_of(&row.dossier)),
        }))
    }

    async fn equity(
        &self,
        request: Request<pb::EquityRequest>,
    ) -> Result<Response<pb::EquityReport>, Status> {
        let r = request.into_inner();
        // 0 is proto3's "not given": the configured margin.
        let margin = if r.margin == 0.0 {
            self.equity.margin
        } else if r.margin.is_finite() && r.margin > 0.0 && r.margin < 10.0 {
            r.margin
        } else {
            return Err(invalid(
                "margin",
                "must be a number above 0 and below 10 (0.2 = 20 %)",
            ));
        };
        let settings = crate::equity::EquitySettings {
            margin,
            ..self.equity
        };
        let report = crate::equity::report(
            &self.store,
            &r.prefecture,
            settings,
            self.clock.now(),
            self.clock.today(),
        )
        .await
        .map_err(|e| db_error("reading the equity figures", &e))?;
        Ok(Response::new(report))
    }

    async fn evaluation(
        &self,
        request: Request<pb::EvaluationRequest>,
    ) -> Result<Response<pb::EvaluationReport>, Status> {
        let year = request.into_inner().year;
        let today = self.clock.today();
        let (Some(from), Some(until)) = (
            NaiveDate::from_ymd_opt(year, 1, 1),
            NaiveDate::from_ymd_opt(year + 1, 1, 1),
        ) else {
            return Err(invalid("year", "is not a year"));
        };
        if from > today || year < 2000 {
            return Err(invalid("year", "must be from 2000 to this year"));
        }
        // One computation at a time, and once a day per year.
        let mut cache = self.evaluations.lock().await;
        let fresh = cache
            .get(&year)
            .filter(|r| r.computed_on.as_ref().and_then(convert::date_from_pb) == Some(today));
        if let Some(report) = fresh {
            return Ok(Response::new(report.clone()));
        }
        let facts = self
            .store
            .evaluation_facts(from, until, today)
            .await
            .map_err(|e| db_error("reading the evaluation's figures", &e))?;
        let min_count = u64::from(self.open_data_min_count);
        let published = evaluation::publish(&evaluation::cells(&facts), min_count);
        let counts = |m: &std::collections::BTreeMap<&'static str, Option<u64>>| {
            evaluation::COUNTS
                .iter()
                .map(|name| pb::EvaluationCount {
                    name: (*name).to_string(),
                    value: m.get(name).copied().flatten(),
                })
                .collect()
        };
        let report = pb::EvaluationReport {
            year,
            min_count: self.open_data_min_count,
            computed_on: Some(convert::date_to_pb(today)),
            cells: published
                .cells
                .iter()
                .map(|c| pb::EvaluationCell {
                    month: c.month.clone(),
                    prefecture: c.prefecture.clone(),
                    channel: convert::channel_to_pb(c.channel) as i32,
                    counts: counts(&c.counts),
                    median_days_to_decision: c.median_days_to_decision,
                })
                .collect(),
            month_totals: published
                .month_totals
                .iter()
                .map(|(month, totals)| pb::EvaluationTotal {
                    month: month.clone(),
                    counts: counts(totals),
                })
                .collect(),
        };
        cache.insert(year, report.clone());
        Ok(Response::new(report))
    }

    async fn processing_times(
        &self,
        request: Request<pb::ProcessingTimesRequest>,
    ) -> Result<Response<pb::ProcessingTimesResponse>, Status> {
        let prefecture = request.into_inner().prefecture;
        if prefecture.is_empty() {
            return Err(invalid(
                "prefecture",
                "is required (a département code such as 59)",
            ));
        }
        let since = self.clock.now() - chrono::Duration::days(ESTIMATE_WINDOW_DAYS);
        let decided = self
            .store
            .decision_days(None, &prefecture, since)
            .await
            .map_err(|e| db_error("reading decisions", &e))?;
        let open = self
            .store
            .open_counts(&prefecture)
            .await
            .map_err(|e| db_error("reading the queue", &e))?;
        let rows = guichet_dossier::Procedure::ALL
            .iter()
            .map(|p| {
                let days: Vec<i64> = decided
                    .iter()
                    .filter(|(q, _)| q == p.as_str())
                    .map(|(_, d)| *d)
                    .collect();
                pb::ProcessingTime {
                    procedure: convert::procedure_to_pb(*p),
                    decisions: days.len() as u32,
                    median_days: percentile(&days, 50).unwrap_or(0) as u32,
                    p80_days: percentile(&days, 80).unwrap_or(0) as u32,
                    open: open.get(p.as_str()).copied().unwrap_or(0) as u32,
                }
            })
            .collect();
        Ok(Response::new(pb::ProcessingTimesResponse {
            prefecture,
            rows,
        }))
    }
}

/// The person an attestation names, from the dossier as filed.
fn holder_of(dossier: &pb::Dossier) -> pb::AttestationHolder {
    let a = dossier
        .filing
        .as_ref()
        .and_then(|f| f.applicant.clone())
        .unwrap_or_default();
    pb::AttestationHolder {
        family_name: a.family_name,
        given_names: a.given_names,
        birth_date: a.birth_date,
        nationality: a.nationality,
        foreigner_number: a.foreigner_number,
    }
}

#[tonic::async_trait]
impl InstructionDesk for Api {
    async fn take_next(
        &self,
        request: Request<pb::TakeNextRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let r = request.into_inner();
        let agent = agent(&r.agent_id, "agent_id")?;
        if r.prefecture.is_empty() {
            return Err(invalid(
                "prefecture",
                "is required: agents take from their own prefecture's queue",
            ));
        }
        let taken = self
            .store
            .take_next(&agent, &r.prefecture, self.clock.now(), self.clock.today())
            .await
            .map_err(|e| db_error("taking the next dossier", &e))?;
        let Some(reference) = taken else {
            return Err(ServiceError::not_found(format!(
                "the queue of prefecture {} is empty",
                r.prefecture
            ))
            .into());
        };
        let reference = parse_reference(&reference)?;
        self.store
            .record_read(reference.as_str(), &agent, self.clock.now())
            .await
            .map_err(|e| db_error("recording a read", &e))?;
        let row = self.row(&reference).await?;
        if row.state == CaseState::Complete {
            let details = StepDetails {
                actor: agent,
                reason: "taken from the queue".into(),
                ..Default::default()
            };
            return self.step(&reference, Step::StartReview, details).await;
        }
        Ok(Response::new(self.case_view(&reference).await?))
    }

    async fn read_case(
        &self,
        request: Request<pb::ReadCaseRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let r = request.into_inner();
        let agent = agent(&r.agent_id, "agent_id")?;
        let reference = parse_reference(&r.reference)?;
        let view = self.case_view(&reference).await?;
        self.store
            .record_read(reference.as_str(), &agent, self.clock.now())
            .await
            .map_err(|e| db_error("recording a read", &e))?;
        Ok(Response::new(view))
    }

    async fn request_documents(
        &self,
        request: Request<pb::RequestDocumentsRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let r = request.into_inner();
        let agent = agent(&r.agent_id, "agent_id")?;
        let reference = parse_reference(&r.reference)?;
        let mut v = Violations::new();
        let kinds: Vec<DocumentKind> = r
            .kinds
            .iter()
            .filter_map(|k| document_kind_of(*k))
            .collect();
        if kinds.is_empty() || kinds.len() != r.kinds.len() {
            v.add("kinds", "name at least one document, each a known kind");
        }
        let deadline: Option<NaiveDate> = r.deadline.as_ref().and_then(convert::date_from_pb);
        match deadline {
            None => v.add("deadline", "is required: the person must know by when"),
            Some(d) if d <= self.clock.today() => v.add("deadline", "must be after today"),
            Some(_) => {}
        }
        if !v.is_empty() {
            return Err(ServiceError::invalid(v).into());
        }
        let details = StepDetails {
            actor: agent,
            holder_only: true,
            reason: r.reason,
            documents: kinds,
            deadline,
        };
        self.step(&reference, Step::RequestDocuments, details).await
    }

    async fn add_document(
        &self,
        request: Request<pb::AddDocumentRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let r = request.into_inner();
        let actor = agent(&r.actor, "actor")?;
        let reference = parse_reference(&r.reference)?;
        let channel = pb::Channel::try_from(r.channel)
            .ok()
            .and_then(convert::channel_from_pb)
            .ok_or_else(|| invalid("channel", "is required: web, ccc, pan or postal"))?;
        let Some(doc) = r.document else {
            return Err(invalid("document", "is required"));
        };
        // The same checks as a document filed with the dossier.
        let raw = RawDocument {
            kind: document_kind_of(doc.kind).map(|k| k.as_str().to_string()),
            sha256: (!doc.sha256.is_empty()).then_some(doc.sha256),
            media_type: (!doc.media_type.is_empty()).then_some(doc.media_type),
            size_bytes: Some(doc.size_bytes),
            filename: (!doc.filename.is_empty()).then_some(doc.filename),
        };
        let document =
            guichet_dossier::filing::parse_document(&raw).map_err(ServiceError::invalid)?;
        self.store
            .add_document(
                reference.as_str(),
                &document,
                channel,
                &actor,
                self.clock.now(),
                self.clock.today(),
            )
            .await
            .map_err(case_error)?;
        self.wake_relay();
        Ok(Response::new(self.case_view(&reference).await?))
    }

    async fn decide(
        &self,
        request: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let r = request.into_inner();
        let agent = agent(&r.agent_id, "agent_id")?;
        let reference = parse_reference(&r.reference)?;
        if !r.favourable && r.reason.trim().is_empty() {
            return Err(invalid(
                "reason",
                "an unfavourable decision must give its reasons",
            ));
        }
        let step = if r.favourable {
            Step::DecideFavourable
        } else {
            Step::DecideUnfavourable
        };
        // The title granted, checked before anything changes.
        let granted = match (&r.new_title, r.favourable) {
            (Some(title), true) => {
                let row = self.row(&reference).await?;
                let record =
                    crate::titles::record_from_decision(&row.dossier, title, self.clock.today())
                        .ok_or_else(|| {
                            invalid(
                                "new_title",
                                "needs a known kind, a number and an expiry date",
                            )
                        })?;
                Some(record)
            }
            (Some(_), false) => {
                return Err(invalid(
                    "new_title",
                    "only a favourable decision grants a title",
                ));
            }
            (None, _) => None,
        };
        let details = StepDetails {
            actor: agent,
            holder_only: true,
            reason: r.reason,
            ..Default::default()
        };
        let view = self.step(&reference, step, details).await?;
        if let Some(record) = granted {
            crate::titles::record(
                self.store.db(),
                &[record],
                "decided",
                Some(reference.as_str()),
                self.clock.now(),
            )
            .await
            .map_err(|e| db_error("recording the title granted", &e))?;
        }
        Ok(view)
    }

    async fn withdraw(
        &self,
        request: Request<pb::WithdrawRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let r = request.into_inner();
        let actor = agent(&r.actor, "actor")?;
        let reference = parse_reference(&r.reference)?;
        let details = StepDetails {
            actor,
            holder_only: true,
            reason: r.reason,
            ..Default::default()
        };
        self.step(&reference, Step::Withdraw, details).await
    }

    async fn hand_over_card(
        &self,
        request: Request<pb::HandOverCardRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let r = request.into_inner();
        let agent = agent(&r.agent_id, "agent_id")?;
        let reference = parse_reference(&r.reference)?;
        let number = r.card_number.trim();
        if number.is_empty() || number.chars().count() > 32 {
            return Err(invalid(
                "card_number",
                "is the number printed on the card (1 to 32 characters)",
            ));
        }
        let until = r
            .valid_until
            .as_ref()
            .and_then(convert::date_from_pb)
            .ok_or_else(|| {
                invalid(
                    "valid_until",
                    "is required: the card's last day of validity",
                )
            })?;
        self.store
            .hand_over_card(
                reference.as_str(),
                &agent,
                number,
                until,
                self.clock.now(),
                self.clock.today(),
            )
            .await
            .map_err(case_error)?;
        Ok(Response::new(self.case_view(&reference).await?))
    }

    async fn confirm_link(
        &self,
        request: Request<pb::ConfirmLinkRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let r = request.into_inner();
        let agent = agent(&r.agent_id, "agent_id")?;
        let reference = parse_reference(&r.reference)?;
        self.store
            .confirm_link(reference.as_str(), r.same_request, &agent, self.clock.now())
            .await
            .map_err(case_error)?;
        Ok(Response::new(self.case_view(&reference).await?))
    }

    async fn take_over(
        &self,
        request: Request<pb::TakeOverRequest>,
    ) -> Result<Response<pb::CaseView>, Status> {
        let r = request.into_inner();
        let agent = agent(&r.agent_id, "agent_id")?;
        let reference = parse_reference(&r.reference)?;
        if r.reason.trim().is_empty() {
            return Err(invalid(
                "reason",
                "is required: a take-over is recorded with its reason",
            ));
        }
        self.store
            .take_over(
                reference.as_str(),
                &agent,
                r.reason.trim(),
                self.clock.now(),
            )
            .await
            .map_err(case_error)?;
        self.store
            .record_read(reference.as_str(), &agent, self.clock.now())
            .await
            .map_err(|e| db_error("recording a read", &e))?;
        // A complete file taken (from another, or again by its holder once
        // the documents asked for arrived) is under review, as one taken
        // from the queue: that is what lets it be decided.
        let row = self.row(&reference).await?;
        if row.state == CaseState::Complete {
            let details = StepDetails {
                actor: agent,
                reason: "taken over for review".into(),
                ..Default::default()
            };
            return self.step(&reference, Step::StartReview, details).await;
        }
        Ok(Response::new(self.case_view(&reference).await?))
    }

    async fn case_facts(
        &self,
        request: Request<pb::CaseFactsRequest>,
    ) -> Result<Response<pb::CaseFactsView>, Status> {
        let r = request.into_inner();
        let reference = parse_reference(&r.reference)?;
        let row = self.row(&reference).await?;
        // A linked second filing is acted on through its first: whoever
        // holds the first answers for both.
        let taken_by = match &row.linked_to {
            Some(primary) => self
                .store
                .case(primary)
                .await
                .map_err(|e| db_error("reading a dossier", &e))?
                .and_then(|p| p.taken_by),
            None => row.taken_by.clone(),
        };
        let documents = if r.with_documents {
            let later = self
                .store
                .documents(row.linked_to.as_deref().unwrap_or(&row.reference))
                .await
                .map_err(|e| db_error("reading a dossier's documents", &e))?;
            receipts(&row, &later)
        } else {
            Vec::new()
        };
        Ok(Response::new(pb::CaseFactsView {
            documents,
            reference: row.reference.clone(),
            prefecture: row.prefecture.clone(),
            taken_by: taken_by.unwrap_or_default(),
            state: convert::case_state_to_pb(row.state) as i32,
            linked_to: row.linked_to.clone().unwrap_or_default(),
        }))
    }
}

/// A receipt for each document of a case: those filed with it (received when
/// it was filed), then those received since, in the order they came.
fn receipts(row: &CaseRow, later: &[DocumentRow]) -> Vec<pb::DocumentReceipt> {
    let filed = row.dossier.filing.iter().flat_map(|f| &f.documents);
    filed
        .map(|d| pb::DocumentReceipt {
            kind: d.kind,
            sha256: d.sha256.clone(),
            size_bytes: d.size_bytes,
            media_type: d.media_type.clone(),
            received_at: Some(convert::timestamp_to_pb(row.filed_at)),
            channel: row.dossier.channel,
        })
        .chain(later.iter().map(|d| pb::DocumentReceipt {
            kind: convert::document_kind_to_pb(d.kind),
            sha256: d.sha256.clone(),
            size_bytes: d.size_bytes,
            media_type: d.media_type.clone(),
            received_at: Some(convert::timestamp_to_pb(d.received_at)),
            channel: convert::channel_to_pb(d.channel) as i32,
        }))
        .collect()
}
