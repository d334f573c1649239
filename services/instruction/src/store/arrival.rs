//! Dossiers from the bus, a batch in one transaction: the message ids
//! claimed, the dossiers not seen before inserted with their state on
//! arrival, their first events and case messages, the attestation owed at
//! once, the link of a second filing of the same request to the first, and
//! near matches proposed to an agent.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::{CaseState, Dossier, Step};
use guichet_kit::bus::OutgoingMessage;
use guichet_kit::db::answered_within;
use guichet_kit::outbox;
use guichet_kit::sql::{Conn, Stmt};
use guichet_proto::convert;
use sqlx::PgConnection;

use super::Store;
use super::rights::{record_attestation, set_cover};
use super::rows::{Incoming, NEAR_MATCHES_SHOWN, OPEN};
use crate::cases::{self, Arrival, EventFacts, join_kinds};

impl Store {
    /// Records a batch in one transaction. Returns the references recorded
    /// for the first time.
    pub async fn record(
        &self,
        batch: &[Incoming],
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> Result<Vec<String>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let fresh = claim_fresh(&mut c, batch).await?;
        let horizon = self.horizon_days;
        let inserted = match c.postgres() {
            Some((pg, bound)) => {
                let inserted = insert_postgres(pg, &fresh, now, today, horizon);
                answered_within(bound, inserted).await?
            }
            None => insert_rows(&mut c, &fresh, now, today, horizon).await?,
        };
        let new = after_insert(&mut c, &fresh, &inserted, now, today, horizon).await?;
        tx.commit().await?;
        Ok(new)
    }
}

/// Claims the batch's message ids; the deliveries seen before are dropped.
async fn claim_fresh<'a>(
    c: &mut Conn<'_>,
    batch: &'a [Incoming],
) -> Result<Vec<&'a Incoming>, sqlx::Error> {
    let ids: Vec<String> = batch.iter().map(|i| i.message_id.clone()).collect();
    let mut claimed = c.claim(&ids).await?;
    // A message republished by an outbox can come twice in one batch: the
    // first copy is the one applied.
    Ok(batch
        .iter()
        .filter(|i| claimed.remove(&i.message_id))
        .collect())
}

fn actor_of(d: &Dossier) -> String {
    format!("channel:{}", d.channel())
}

/// The dossiers of a batch recorded for the first time, each once even if
/// two messages carried it, with their state on arrival.
fn first_arrivals<'a>(
    fresh: &[&'a Incoming],
    inserted: &HashSet<String>,
    today: NaiveDate,
    horizon_days: i64,
) -> Vec<(&'a Incoming, Arrival)> {
    let mut pending = inserted.clone();
    fresh
        .iter()
        .filter(|i| pending.remove(i.dossier.reference.as_str()))
        .map(|i| (*i, cases::on_arrival(&i.dossier, today, horizon_days)))
        .collect()
}

/// A new dossier's first two events: filed, then found complete or not.
fn arrival_events(arrival: &Arrival) -> [(&'static str, String); 2] {
    let found = if arrival.state == CaseState::Complete {
        Step::FoundComplete
    } else {
        Step::FoundIncomplete
    };
    [
        ("filed", String::new()),
        (found.as_str(), join_kinds(&arrival.missing)),
    ]
}

/// The case event telling the person's channel how their dossier was found.
fn arrival_message(d: &Dossier, arrival: &Arrival, now: DateTime<Utc>) -> OutgoingMessage {
    let [_, (kind, _)] = arrival_events(arrival);
    cases::event_message(EventFacts {
        reference: d.reference.as_str(),
        kind,
        dossier: &convert::dossier_to_pb(d),
        state: arrival.state,
        at: now,
        reason: "",
        attestation: None,
        missing: &arrival.missing,
        documents_deadline: None,
    })
}

const INSERT_ROW: &str = "INSERT INTO dossiers (reference, channel, procedure, motif, prefecture, \
    legal_filing_date, queue_date, filed_at, received_at, recorded_at, title_expires_on, \
    cover_until, cover_basis, dossier, trace_id, state, missing, person_key, near_key, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $9) \
    ON CONFLICT (reference) DO NOTHING";

/// Row by row (SQLite: one writer, no round trips to save). Returns the
/// references inserted; a reference seen under another message id, a
/// channel re-sending, is kept as first recorded.
async fn insert_rows(
    c: &mut Conn<'_>,
    fresh: &[&Incoming],
    now: DateTime<Utc>,
    today: NaiveDate,
    horizon_days: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let mut inserted = HashSet::new();
    for i in fresh {
        let d = &i.dossier;
        let arrival = cases::on_arrival(d, today, horizon_days);
        let done = c
            .execute(
                Stmt::new(INSERT_ROW)
                    .bind(d.reference.as_str())
                    .bind(d.channel().as_str())
                    .bind(d.filing.procedure.as_str())
                    .bind(d.filing.motif.as_str())
                    .bind(d.prefecture())
                    .bind(d.legal_filing_date)
                    .bind(d.filed_at)
                    .bind(d.received_at)
                    .bind(now)
                    .bind(d.filing.current_title.as_ref().map(|t| t.expires_on))
                    .bind(arrival.cover.until())
                    .bind(arrival.cover.basis().map(|b| b.as_str()))
                    .bind(i.encoded.as_slice())
                    .bind(i.trace_id.as_str())
                    .bind(arrival.state.as_str())
                    .bind(join_kinds(&arrival.missing))
                    .bind(d.filing.applicant.person_key())
                    .bind(d.filing.applicant.near_key()),
            )
            .await?;
        if done == 1 {
            inserted.insert(d.reference.to_string());
        }
    }
    Ok(inserted)
}

/// PostgreSQL: the whole batch in one array statement; the same outcome as
/// `insert_rows`.
async fn insert_postgres(
    pg: &mut PgConnection,
    fresh: &[&Incoming],
    now: DateTime<Utc>,
    today: NaiveDate,
    horizon_days: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    if fresh.is_empty() {
        return Ok(HashSet::new());
    }
    let n = fresh.len();
    let mut cols: [Vec<String>; 11] = Default::default();
    let mut dates: [Vec<NaiveDate>; 1] = Default::default();
    let mut times: [Vec<DateTime<Utc>>; 2] = Default::default();
    let mut opt_dates: [Vec<Option<NaiveDate>>; 2] = Default::default();
    let mut opt_text: Vec<Option<String>> = Vec::with_capacity(n);
    let mut encoded = Vec::with_capacity(n);
    // In the order of their references: several instances recording batches
    // that share a dossier (a redelivery, a republished message) then wait on
    // each other's rows in one order, instead of deadlocking.
    let mut ordered: Vec<&Incoming> = fresh.to_vec();
    ordered.sort_unstable_by(|a, b| {
        a.dossier
            .reference
            .as_str()
            .cmp(b.dossier.reference.as_str())
    });
    for i in ordered {
        let d = &i.dossier;
        let arrival = cases::on_arrival(d, today, horizon_days);
        cols[0].push(d.reference.to_string());
        cols[1].push(d.channel().as_str().to_string());
        cols[2].push(d.filing.procedure.as_str().to_string());
        cols[3].push(d.filing.motif.as_str().to_string());
        cols[4].push(d.prefecture().to_string());
        cols[5].push(i.trace_id.clone());
        cols[6].push(arrival.state.as_str().to_string());
        cols[7].push(join_kinds(&arrival.missing));
        cols[8].push(d.filing.applicant.person_key());
        cols[9].push(i.message_id.clone());
        cols[10].push(d.filing.applicant.near_key());
        dates[0].push(d.legal_filing_date);
        times[0].push(d.filed_at);
        times[1].push(d.received_at);
        opt_dates[0].push(d.filing.current_title.as_ref().map(|t| t.expires_on));
        opt_dates[1].push(arrival.cover.until());
        opt_text.push(arrival.cover.basis().map(|b| b.as_str().to_string()));
        encoded.push(i.encoded.clone());
    }
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO dossiers (reference, channel, procedure, motif, prefecture, legal_filing_date, \
         queue_date, filed_at, received_at, recorded_at, title_expires_on, cover_until, cover_basis, \
         dossier, trace_id, state, missing, person_key, near_key, updated_at) \
         SELECT r, c, p, m, pf, lfd, lfd, fa, ra, $15, te, cu, cb, d, t, s, mi, pk, nk, $15 FROM UNNEST(\
         $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::date[], \
         $7::timestamptz[], $8::timestamptz[], $9::date[], $10::date[], $11::text[], $12::bytea[], \
         $13::text[], $14::text[], $16::text[], $17::text[], $18::text[]) \
         AS u(r, c, p, m, pf, lfd, fa, ra, te, cu, cb, d, t, s, mi, pk, nk) \
         ON CONFLICT (reference) DO NOTHING RETURNING reference",
    )
    .bind(&cols[0])
    .bind(&cols[1])
    .bind(&cols[2])
    .bind(&cols[3])
    .bind(&cols[4])
    .bind(&dates[0])
    .bind(&times[0])
    .bind(&times[1])
    .bind(&opt_dates[0])
    .bind(&opt_dates[1])
    .bind(&opt_text)
    .bind(&encoded)
    .bind(&cols[5])
    .bind(&cols[6])
    .bind(now)
    .bind(&cols[7])
    .bind(&cols[8])
    .bind(&cols[10])
    .fetch_all(&mut *pg)
    .await?;
    Ok(inserted.into_iter().collect())
}

/// After the dossiers are in: their first events and case messages, then,
/// dossier by dossier, the link to an earlier filing of the same request,
/// the attestation owed at once and near matches. PostgreSQL writes the
/// events and messages of the whole batch in one statement each, and finds
/// in one statement which dossiers have a candidate to link or to propose at
/// all: no candidate before linking means none after (linking only takes
/// dossiers out of the candidates), so the outcome is the row-by-row one.
async fn after_insert(
    c: &mut Conn<'_>,
    fresh: &[&Incoming],
    inserted: &HashSet<String>,
    now: DateTime<Utc>,
    today: NaiveDate,
    horizon_days: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let arrivals = first_arrivals(fresh, inserted, today, horizon_days);
    if arrivals.is_empty() {
        return Ok(Vec::new());
    }
    let refs: Vec<String> = arrivals
        .iter()
        .map(|(i, _)| i.dossier.reference.to_string())
        .collect();
    // Each person's key (a digest), worked out once for the batch.
    let keys: Vec<String> = arrivals
        .iter()
        .map(|(i, _)| i.dossier.filing.applicant.person_key())
        .collect();
    let (to_link, to_propose) = match c.postgres() {
        Some((pg, bound)) => {
            answered_within(bound, first_events_postgres(pg, &arrivals, now)).await?;
            answered_within(bound, candidates_postgres(pg, &arrivals, &keys)).await?
        }
        None => {
            for (i, arrival) in &arrivals {
                first_events(c, i, arrival, now).await?;
            }
            // Row by row: each dossier's own query decides.
            let all: HashSet<String> = refs.iter().cloned().collect();
            (all.clone(), all)
        }
    };
    // Linking updates the person's first filing. Taken person by person, in
    // one order, so two instances whose batches hold filings of the same
    // people lock those first filings in the same order and never deadlock.
    // The outcome does not depend on the order (see `link_to_first`).
    let mut ordered: Vec<(&(&Incoming, Arrival), &str)> = arrivals
        .iter()
        .zip(keys.iter().map(String::as_str))
        .collect();
    ordered.sort_by(|((a, _), ka), ((b, _), kb)| {
        (ka, a.dossier.reference.as_str()).cmp(&(kb, b.dossier.reference.as_str()))
    });
    for ((i, arrival), key) in ordered {
        let reference = i.dossier.reference.as_str();
        let linked = to_link.contains(reference) && link_to_first(c, i, key, now).await?;
        attest_on_arrival(c, &i.dossier, arrival, linked, now, today).await?;
        if to_propose.contains(reference) {
            propose_near_matches(c, i, now).await?;
        }
    }
    Ok(refs)
}

const INSERT_EVENT: &str = "INSERT INTO dossier_events \
    (reference, kind, actor, at, reason, trace_id, message_id) VALUES ($1, $2, $3, $4, $5, $6, $7)";

async fn first_events(
    c: &mut Conn<'_>,
    i: &Incoming,
    arrival: &Arrival,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let d = &i.dossier;
    for (kind, reason) in arrival_events(arrival) {
        c.execute(
            Stmt::new(INSERT_EVENT)
                .bind(d.reference.as_str())
                .bind(kind)
                .bind(actor_of(d))
                .bind(now)
                .bind(reason)
                .bind(i.trace_id.as_str())
                .bind(i.message_id.as_str()),
        )
        .await?;
    }
    c.enqueue(&arrival_message(d, arrival, now)).await
}

/// `first_events` for the whole batch, in one statement for the events and
/// one for the messages.
async fn first_events_postgres(
    pg: &mut PgConnection,
    arrivals: &[(&Incoming, Arrival)],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut events: [Vec<String>; 6] = Default::default();
    let mut messages = Vec::with_capacity(arrivals.len());
    for (i, arrival) in arrivals {
        let d = &i.dossier;
        for (kind, reason) in arrival_events(arrival) {
            events[0].push(d.reference.to_string());
            events[1].push(kind.to_string());
            events[2].push(actor_of(d));
            events[3].push(reason);
            events[4].push(i.trace_id.clone());
            events[5].push(i.message_id.clone());
        }
        messages.push(arrival_message(d, arrival, now));
    }
    sqlx::query(
        "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id, message_id) \
         SELECT r, k, a, $7, re, t, m FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
         $5::text[], $6::text[]) AS u(r, k, a, re, t, m)",
    )
    .bind(&events[0])
    .bind(&events[1])
    .bind(&events[2])
    .bind(&events[3])
    .bind(&events[4])
    .bind(&events[5])
    .bind(now)
    .execute(&mut *pg)
    .await?;
    outbox::enqueue_all_postgres(&mut *pg, &messages).await
}

/// The dossiers of the batch with a filing to link to, and those with a
/// near match to propose, both found in one statement.
async fn candidates_postgres(
    pg: &mut PgConnection,
    arrivals: &[(&Incoming, Arrival)],
    keys: &[String],
) -> Result<(HashSet<String>, HashSet<String>), sqlx::Error> {
    let (mut refs, mut near, mut procedures, mut filed) = (vec![], vec![], vec![], vec![]);
    for (i, _) in arrivals {
        let d = &i.dossier;
        refs.push(d.reference.to_string());
        near.push(d.filing.applicant.near_key());
        procedures.push(d.filing.procedure.as_str().to_string());
        filed.push(d.filed_at);
    }
    // Both questions in one statement: a row per dossier of the batch, with
    // whether it has a filing to link to and whether it has a near match.
    let found: Vec<(String, bool, bool)> = sqlx::query_as(&format!(
        "SELECT u.r, \
         EXISTS (SELECT 1 FROM dossiers WHERE person_key = u.pk AND procedure = u.p \
         AND reference <> u.r AND linked_to IS NULL AND {OPEN} \
         AND (filed_at < u.fa OR (filed_at = u.fa AND reference < u.r))), \
         EXISTS (SELECT 1 FROM dossiers WHERE near_key = u.nk AND procedure = u.p \
         AND person_key <> u.pk AND reference <> u.r AND linked_to IS NULL AND {OPEN} \
         AND (filed_at < u.fa OR (filed_at = u.fa AND reference < u.r))) \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
         AS u(r, pk, nk, p, fa)"
    ))
    .bind(&refs)
    .bind(keys)
    .bind(&near)
    .bind(&procedures)
    .bind(&filed)
    // Planned at each run, on the table as it is: a plan kept from the
    // first batches, made on a nearly empty table, looks for near matches
    // by procedure alone and reads every open dossier of it, for every
    // dossier recorded (BENCHMARKS.md, "A plan kept from the empty table").
    .persistent(false)
    .fetch_all(&mut *pg)
    .await?;
    let (mut to_link, mut to_propose) = (HashSet::new(), HashSet::new());
    for (reference, link, propose) in found {
        if link {
            to_link.insert(reference.clone());
        }
        if propose {
            to_propose.insert(reference);
        }
    }
    Ok((to_link, to_propose))
}

/// Links the dossier `i` to the first open filing of the same request by
/// the same person, if there is one; returns whether it did. The first is
/// the one filed first; looking only at earlier ones makes the choice the
/// same whatever the order dossiers arrive in, or are batched in.
async fn link_to_first(
    c: &mut Conn<'_>,
    i: &Incoming,
    person_key: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let d = &i.dossier;
    let reference = d.reference.as_str();
    let first: Option<(String, Option<NaiveDate>)> = c
        .fetch_optional(
            Stmt::new(format!(
                "SELECT reference, queue_date FROM dossiers WHERE person_key = $1 \
                 AND procedure = $2 AND reference <> $3 AND linked_to IS NULL AND {OPEN} \
                 AND (filed_at < $4 OR (filed_at = $4 AND reference < $3)) \
                 ORDER BY filed_at, reference LIMIT 1"
            ))
            .bind(person_key)
            .bind(d.filing.procedure.as_str())
            .bind(reference)
            .bind(d.filed_at)
            .planned_each_time(),
        )
        .await?;
    let Some((primary, queue_date)) = first else {
        return Ok(false);
    };
    let earliest = queue_date.map_or(d.legal_filing_date, |q| q.min(d.legal_filing_date));
    c.execute(
        Stmt::new("UPDATE dossiers SET linked_to = $2, updated_at = $3 WHERE reference = $1")
            .bind(reference)
            .bind(primary.as_str())
            .bind(now),
    )
    .await?;
    c.execute(
        Stmt::new("UPDATE dossiers SET queue_date = $2, updated_at = $3 WHERE reference = $1")
            .bind(primary.as_str())
            .bind(earliest)
            .bind(now),
    )
    .await?;
    for (r, other) in [(reference, primary.as_str()), (primary.as_str(), reference)] {
        system_event(
            c,
            r,
            "linked",
            format!("same request as {other}; an agent confirms"),
            &i.trace_id,
            now,
        )
        .await?;
    }
    Ok(true)
}

/// The attestation a dossier is owed the moment it is recorded (a complete
/// renewal whose cover ends within the horizon), after its case messages so
/// the person hears of the filing first. A filing just linked to an earlier
/// one stands where that one stands and gets none of its own: its cover
/// columns are set back to what it holds without it.
async fn attest_on_arrival(
    c: &mut Conn<'_>,
    d: &Dossier,
    arrival: &Arrival,
    linked: bool,
    now: DateTime<Utc>,
    today: NaiveDate,
) -> Result<(), sqlx::Error> {
    match arrival.attestation {
        Some(a) if !linked => {
            let dossier = convert::dossier_to_pb(d);
            record_attestation(c, d.reference.as_str(), &dossier, arrival.state, a, now).await?;
        }
        Some(_) => {
            let cover = cases::cover_without_attestations(d, arrival.state, today);
            set_cover(c, d.reference.as_str(), cover).await?;
        }
        None => {}
    }
    Ok(())
}

/// Proposes to an agent the open filings, filed before the dossier `i`,
/// that share its family name, birth date and nationality but not its given
/// names: one person spelled two ways, or twins. Nothing is linked; both get
/// a `near_match` event naming the other, and the case view lists them.
/// Looking only at earlier filings proposes each pair once.
async fn propose_near_matches(
    c: &mut Conn<'_>,
    i: &Incoming,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let d = &i.dossier;
    let reference = d.reference.as_str();
    let near: Vec<String> = c
        .scalars(
            Stmt::new(format!(
                "SELECT reference FROM dossiers WHERE near_key = $1 AND procedure = $2 \
                 AND person_key <> $3 AND reference <> $4 AND linked_to IS NULL AND {OPEN} \
                 AND (filed_at < $5 OR (filed_at = $5 AND reference < $4)) \
                 ORDER BY filed_at, reference LIMIT {NEAR_MATCHES_SHOWN}"
            ))
            .bind(d.filing.applicant.near_key())
            .bind(d.filing.procedure.as_str())
            .bind(d.filing.applicant.person_key())
            .bind(reference)
            .bind(d.filed_at)
            .planned_each_time(),
        )
        .await?;
    for other in &near {
        for (r, o) in [(reference, other.as_str()), (other.as_str(), reference)] {
            let reason = format!(
                "{o}: same family name, birth date and nationality, other given names; \
                 an agent decides whether it is the same person"
            );
            system_event(c, r, "near_match", reason, &i.trace_id, now).await?;
        }
    }
    Ok(())
}

async fn system_event(
    c: &mut Conn<'_>,
    reference: &str,
    kind: &str,
    reason: String,
    trace_id: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    c.execute(
        Stmt::new(
            "INSERT INTO dossier_events (reference, kind, actor, at, reason, trace_id) \
             VALUES ($1, $2, 'system', $3, $4, $5)",
        )
        .bind(reference)
        .bind(kind)
        .bind(now)
        .bind(reason)
        .bind(trace_id),
    )
    .await?;
    Ok(())
}
