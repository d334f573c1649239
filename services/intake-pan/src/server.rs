//! Start-up and the gRPC face of the desk service.

use std::time::Duration;

use guichet_dossier::desk::BookingRoute;
use guichet_dossier::filing::RawProvenance;
use guichet_dossier::signalement;
use guichet_dossier::{Channel, Violations};
use guichet_intake::{Intake, prepare_channel};
use guichet_kit::Metrics;
use guichet_kit::db::Migrations;
use guichet_kit::grpc::TracedChannel;
use guichet_kit::metrics::GaugeF64;
use guichet_kit::service::{Listen, Running, Shared, StartError, Tasks, client_channel};
use guichet_kit::shutdown::Shutdown;
use guichet_kit::{Config, ErrorKind, ServiceError};
use guichet_proto::v1::call_centre_client::CallCentreClient;
use guichet_proto::v1::desk_server::{Desk, DeskServer};
use guichet_proto::{convert, v1 as pb};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tonic::{Request, Response, Status};

use crate::desks::{self, DeskError, Desks, NewBooking};

/// Both backends' migrations, in order (the schema parity test compares them).
pub static MIGRATIONS: Migrations = Migrations {
    postgres: &[&guichet_intake::POSTGRES, &POSTGRES],
    sqlite: &[&guichet_intake::SQLITE, &SQLITE],
};
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub const SCHEMA: &str = "intake_pan";

/// How often the desk figures on `/metrics` are refreshed.
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
/// Longest wait for the call-centre service to say what a report is.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// `call_centre_url`: where the reports named by bookings are checked.
pub async fn start(
    config: &Config,
    listen: impl Into<Listen>,
    call_centre_url: &str,
    shared: &Shared,
) -> Result<Running, StartError> {
    let channel =
        prepare_channel(config, SCHEMA, &MIGRATIONS, listen, shared, Channel::Pan).await?;
    let service = DeskService {
        intake: channel.intake.clone(),
        desks: Desks::new(channel.db.clone()),
        call_centre: CallCentreClient::new(client_channel(call_centre_url)?),
    };
    let mut tasks = Tasks::new();
    tasks.spawn(
        "figures",
        sample_forever(service.clone(), shared.shutdown.clone()),
    );
    let routes = tonic::service::Routes::new(DeskServer::new(service));
    Ok(channel
        .with_relay(&mut tasks, &shared.shutdown)
        .serve(tasks, routes, "guichet.v1.Desk", &shared.shutdown)
        .await)
}

#[derive(Clone)]
struct DeskService {
    intake: Intake,
    desks: Desks,
    call_centre: CallCentreClient<TracedChannel>,
}

impl DeskService {
    /// Refuses a booking that names a report unless the call-centre service
    /// knows that report, it is not closed, and it belongs to the prefecture
    /// of `site_id`: the places kept for reports go to real reports only.
    async fn check_report(&self, report_id: &str, site_id: &str) -> Result<(), Status> {
        let site = self.desks.site(site_id).await.map_err(err)?;
        let mut request = Request::new(pb::GetReportRequest {
            id: report_id.to_string(),
        });
        request.set_timeout(PEER_TIMEOUT);
        let report = match self.call_centre.clone().get_report(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => return Err(peer_error(&status, "report_id", "report")),
        };
        let state = convert::report_state_from_pb(report.state).ok_or_else(|| {
            Status::from(ServiceError::new(
                ErrorKind::Internal,
                "the call-centre service gave a report without a state",
            ))
        })?;
        signalement::check_report_for_booking(state, &report.prefecture, &site.prefecture).map_err(
            |why| {
                ServiceError::on_field(ErrorKind::WrongState, "report_id", why.to_string()).into()
            },
        )
    }
}

/// What to answer when the peer service, asked about the thing `field`
/// names, said no or could not be reached: never a booking on a guess.
fn peer_error(status: &Status, field: &str, what: &str) -> Status {
    use tonic::Code;
    match status.code() {
        Code::NotFound => {
            ServiceError::on_field(ErrorKind::NotFound, field, format!("names no {what}")).into()
        }
        // No answer from the service itself (refused, cut, timed out): the
        // status then carries the transport's error as its source.
        code if matches!(
            code,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        ) || std::error::Error::source(status).is_some() =>
        {
            tracing::warn!(code = ?status.code(), message = status.message(), "the call-centre service cannot be reached");
            ServiceError::unavailable(format!(
                "the call-centre service cannot be reached to check {field}; try again"
            ))
            .into()
        }
        code => {
            tracing::error!(
                ?code,
                message = status.message(),
                "the call-centre service refused a report look-up"
            );
            ServiceError::new(ErrorKind::Internal, "internal error").into()
        }
    }
}

/// Fill rate, bookings and no-shows per site on `/metrics`.
async fn sample_forever(service: DeskService, shutdown: Shutdown) {
    loop {
        match service.desks.figures(service.intake.clock.today()).await {
            Ok(figures) => {
                let m = SiteFigures::of(&service.intake.metrics);
                for f in figures {
                    let labels = SiteLabels { site: f.site_id };
                    if f.places_offered > 0 {
                        m.fill
                            .get_or_create(&labels)
                            .set(f.booked as f64 / f.places_offered as f64);
                    }
                    m.booked.get_or_create(&labels).set(f.booked as i64);
                    m.no_shows.get_or_create(&labels).set(f.no_shows as i64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot sample the desk figures"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

impl From<DeskError> for ServiceError {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::NoSite(id) => ServiceError::not_found(format!("no site {id}")),
            DeskError::NoAppointment(id) => ServiceError::not_found(format!("no appointment {id}")),
            DeskError::BadSlot(why) => ServiceError::invalid(Violations::one("starts_at", why)),
            DeskError::SlotFull => ServiceError::new(
                ErrorKind::WrongState,
                "this slot is full: choose another one",
            ),
            DeskError::WrongState(why) => ServiceError::new(ErrorKind::WrongState, why),
            DeskError::KeyReused => ServiceError::conflict(
                "this idempotency key was already used for a different booking; \
                 use a new key for a new booking",
            ),
            DeskError::Unreadable(e) => ServiceError::internal("reading the desks", &e),
            DeskError::Db(e) => ServiceError::database("the desk service", "the desks", &e),
        }
    }
}

fn err(e: DeskError) -> Status {
    ServiceError::from(e).into()
}

fn when(
    v: &mut Violations,
    field: &str,
    t: &Option<prost_types::Timestamp>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let at = t.as_ref().and_then(convert::timestamp_from_pb);
    if at.is_none() {
        v.add(field, "is required: the slot's start time");
    }
    at
}

fn route(v: &mut Violations, value: i32) -> BookingRoute {
    convert::booking_route_from_pb(value).unwrap_or_else(|| {
        v.add("route", "is required: online, phone or front_desk");
        BookingRoute::Online
    })
}

#[tonic::async_trait]
impl Desk for DeskService {
    async fn upsert_site(&self, request: Request<pb::Site>) -> Result<Response<pb::Site>, Status> {
        let site = request.into_inner();
        desks::rules_of(&site).map_err(ServiceError::invalid)?;
        self.desks
            .upsert_site(&site, self.intake.clock.now())
            .await
            .map_err(err)?;
        Ok(Response::new(site))
    }

    async fn list_sites(
        &self,
        request: Request<pb::ListSitesRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, Status> {
        let sites = self
            .desks
            .sites(&request.into_inner().prefecture)
            .await
            .map_err(err)?;
        Ok(Response::new(pb::ListSitesResponse { sites }))
    }

    async fn list_slots(
        &self,
        request: Request<pb::ListSlotsRequest>,
    ) -> Result<Response<pb::ListSlotsResponse>, Status> {
        let r = request.into_inner();
        let date = r
            .date
            .as_ref()
            .and_then(convert::date_from_pb)
            .ok_or_else(|| {
                Status::from(ServiceError::invalid(Violations::one(
                    "date",
                    "is required, a valid calendar date",
                )))
            })?;
        let slots = self.desks.slots(&r.site_id, date).await.map_err(err)?;
        Ok(Response::new(pb::ListSlotsResponse {
            site_id: r.site_id,
            slots: slots
                .into_iter()
                .map(|s| pb::Slot {
                    starts_at: Some(convert::timestamp_to_pb(s.starts_at)),
                    places: s.places,
                    booked: s.booked,
                    free: s.free,
                    free_for_reports: s.free_for_reports,
                })
                .collect(),
        }))
    }

    async fn book(
        &self,
        request: Request<pb::BookRequest>,
    ) -> Result<Response<pb::Appointment>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let starts_at = when(&mut v, "starts_at", &r.starts_at);
        let route = route(&mut v, r.route);
        let person = r.person.unwrap_or_default();
        if person.family_name.trim().is_empty() {
            v.add("person.family_name", "is required");
        }
        if person.phone.trim().is_empty() && person.email.trim().is_empty() {
            v.add(
                "person",
                "a phone number or an e-mail address is needed to confirm the appointment",
            );
        }
        // The confirmation and the reminder go to what is given here: one
        // the notifier cannot use would leave the person without either.
        let phone = person.phone.trim();
        if !phone.is_empty() {
            guichet_dossier::filing::phone_field(&mut v, "person.phone", phone);
        }
        let email = person.email.trim();
        if !email.is_empty() {
            guichet_dossier::filing::email_field(&mut v, "person.email", email);
        }
        if route != BookingRoute::Online && r.booked_by.trim().is_empty() {
            v.add(
                "booked_by",
                "is required when an agent books by phone or at the front desk",
            );
        }
        if r.idempotency_key.trim().is_empty() {
            v.add("idempotency_key", "is required");
        }
        let Some(starts_at) = starts_at.filter(|_| v.is_empty()) else {
            return Err(ServiceError::invalid(v).into());
        };
        let report_id = Some(r.report_id.trim().to_string()).filter(|s| !s.is_empty());
        if let Some(report_id) = &report_id {
            // A retry is answered with what it booked, even if the report
            // closed since.
            if let Some(done) = self
                .desks
                .booked_with_key(&r.idempotency_key)
                .await
                .map_err(err)?
            {
                return Ok(Response::new(desks::to_pb(&done)));
            }
            self.check_report(report_id, &r.site_id).await?;
        }
        let row = self
            .desks
            .book(
                NewBooking {
                    idempotency_key: r.idempotency_key,
                    site_id: r.site_id,
                    starts_at,
                    person,
                    route,
                    booked_by: r.booked_by.trim().to_string(),
                    report_id,
                },
                self.intake.clock.now(),
            )
            .await
            .map_err(err)?;
        Ok(Response::new(desks::to_pb(&row)))
    }

    async fn r#move(
        &self,
        request: Request<pb::MoveRequest>,
    ) -> Result<Response<pb::Appointment>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let starts_at = when(&mut v, "starts_at", &r.starts_at);
        let route = route(&mut v, r.route);
        let Some(starts_at) = starts_at.filter(|_| v.is_empty()) else {
            return Err(ServiceError::invalid(v).into());
        };
        let by = if r.by.trim().is_empty() {
            "the person"
        } else {
            r.by.trim()
        };
        let row = self
            .desks
            .move_to(&r.id, starts_at, route, by, self.intake.clock.now())
            .await
            .map_err(err)?;
        Ok(Response::new(desks::to_pb(&row)))
    }

    async fn cancel(
        &self,
        request: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::Appointment>, Status> {
        let r = request.into_inner();
        let mut v = Violations::default();
        let route = route(&mut v, r.route);
        if !v.is_empty() {
            return Err(ServiceError::invalid(v).into());
        }
        let by = if r.by.trim().is_empty() {
            "the person"
        } else {
            r.by.trim()
        };
        let row = self
            .desks
            .cancel(&r.id, route, by, &r.reason, self.intake.clock.now())
            .await
            .map_err(err)?;
        Ok(Response::new(desks::to_pb(&row)))
    }

    async fn record_attendance(
        &self,
        request: Request<pb::RecordAttendanceRequest>,
    ) -> Result<Response<pb::Appointment>, Status> {
        let r = request.into_inner();
        if r.by.trim().is_empty() {
            return Err(ServiceError::invalid(Violations::one(
                "by",
                "is required: the desk agent",
            ))
            .into());
        }
        let row = self
            .desks
            .record_attendance(&r.id, r.attended, r.by.trim(), self.intake.clock.now())
            .await
            .map_err(err)?;
        Ok(Response::new(desks::to_pb(&row)))
    }

    async fn get_appointment(
        &self,
        request: Request<pb::GetAppointmentRequest>,
    ) -> Result<Response<pb::Appointment>, Status> {
        let row = self
            .desks
            .appointment(&request.into_inner().id)
            .await
            .map_err(err)?;
        Ok(Response::new(desks::to_pb(&row)))
    }

    async fn list_appointments(
        &self,
        request: Request<pb::ListAppointmentsRequest>,
    ) -> Result<Response<pb::ListAppointmentsResponse>, Status> {
        let r = request.into_inner();
        let day = r
            .date
            .as_ref()
            .and_then(convert::date_from_pb)
            .ok_or_else(|| {
                Status::from(ServiceError::invalid(guichet_dossier::Violations::one(
                    "date",
                    "is required: the day to list",
                )))
            })?;
        let rows = self
            .desks
            .appointments_of_day(&r.site_id, day)
            .await
            .map_err(err)?;
        Ok(Response::new(pb::ListAppointmentsResponse {
            appointments: rows.iter().map(desks::to_pb).collect(),
        }))
    }

    async fn file_assisted(
        &self,
        request: Request<pb::FileAssistedRequest>,
    ) -> Result<Response<pb::FileAssistedResponse>, Status> {
        let r = request.into_inner();
        let filing = r.filing.ok_or_else(|| {
            Status::from(ServiceError::invalid(Violations::one(
                "filing",
                "is required",
            )))
        })?;
        // The site must be one of ours: the filing names where it was taken.
        if !r.site_id.trim().is_empty() {
            self.desks.site(r.site_id.trim()).await.map_err(err)?;
        }
        let (raw, _) = convert::raw_filing_from_pb(&filing);
        let provenance = RawProvenance::Pan {
            site_id: Some(r.site_id),
            desk_agent_id: Some(r.desk_agent_id),
            appointment_id: Some(r.appointment_id),
            identity_checked: r.identity_checked,
        };
        let accepted = self.intake.accept(&raw, &provenance).await?;
        Ok(Response::new(pb::FileAssistedResponse {
            receipt: Some(accepted.receipt),
            created: accepted.created,
            trace_id: accepted.trace_id,
        }))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    site: String,
}

/// The desks' own figures on `/metrics`, per site, over the last 30 days.
struct SiteFigures {
    fill: Family<SiteLabels, GaugeF64>,
    booked: Family<SiteLabels, Gauge>,
    no_shows: Family<SiteLabels, Gauge>,
}

impl SiteFigures {
    fn of(m: &Metrics) -> Self {
        SiteFigures {
            fill: m.family(
                "appointment_fill_ratio",
                "Booked places over places offered in the last 30 days' slots",
                None,
            ),
            booked: m.family(
                "appointments_booked",
                "Appointments booked, last 30 days",
                None,
            ),
            no_shows: m.family(
                "appointment_no_shows",
                "Appointments the person did not come to, last 30 days",
                None,
            ),
        }
    }
}
