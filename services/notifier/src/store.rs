//! The notifier's table: one row per message, with where it stands.

use chrono::{DateTime, Utc};
use guichet_dossier::notice::{DeliveryState, Medium, NoticeKind};
use guichet_kit::bus::OutgoingMessage;
use guichet_kit::db::{Database, answered_within};
use guichet_kit::sql::{Conn, Stmt};

/// A message to send, as the consumer plans it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotice {
    pub notice_key: String,
    pub medium: Medium,
    pub kind: NoticeKind,
    pub subject_ref: String,
    pub recipient: String,
    pub language: String,
    pub routing_key: String,
    pub event: Vec<u8>,
    pub has_address: bool,
    pub not_before: DateTime<Utc>,
    pub event_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NoticeRow {
    pub id: String,
    pub notice_key: String,
    /// Codes read back through their list: damaged data is an error, not
    /// a plausible medium or kind.
    #[sqlx(try_from = "String")]
    pub medium: Medium,
    #[sqlx(try_from = "String")]
    pub kind: NoticeKind,
    pub subject_ref: String,
    pub recipient: String,
    pub language: String,
    pub routing_key: String,
    pub event: Vec<u8>,
    pub has_address: bool,
    pub state: String,
    pub failure: Option<String>,
    pub attempts: i32,
    pub not_before: DateTime<Utc>,
    pub event_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub first_try_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub provider_id: Option<String>,
}

const COLUMNS: &str = "id, notice_key, medium, kind, subject_ref, recipient, language, \
    routing_key, event, has_address, state, failure, attempts, not_before, event_at, \
    created_at, first_try_at, sent_at, delivered_at, provider_id";

/// The columns a new message is inserted with, in the order of the values
/// of both ways of inserting it (one row, or a batch's arrays).
const INSERTED: &str = "id, notice_key, medium, kind, subject_ref, recipient, language, \
    routing_key, event, has_address, state, attempts, not_before, event_at, created_at";

/// What a row already there does when a notice comes again on its medium:
/// nothing, except an appointment moved back to a time it had, whose
/// reminder (cancelled by the move away) is planned again.
const ON_CONFLICT: &str = "ON CONFLICT (notice_key, medium) DO UPDATE SET state = 'queued', \
     not_before = excluded.not_before \
     WHERE notices.state = 'cancelled' AND notices.kind = 'appointment_reminder'";

/// Inserts a message unless the same notice already has one on that
/// medium; whether it was new.
pub async fn insert(
    c: &mut Conn<'_>,
    n: &NewNotice,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    Ok(insert_all(c, &[n], now).await? == 1)
}

/// Inserts the messages of a batch of events, as [`insert`] each: on
/// PostgreSQL in one statement (a batch's events cost one round trip, not
/// one per message); how many were new.
pub async fn insert_all(
    c: &mut Conn<'_>,
    notices: &[&NewNotice],
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    // A notice twice in one statement would be a second conflict on a row
    // the statement wrote, which PostgreSQL refuses: the first one counts,
    // as it would one statement after the other.
    let mut seen = std::collections::HashSet::new();
    let notices: Vec<&NewNotice> = notices
        .iter()
        .copied()
        .filter(|n| seen.insert((n.notice_key.as_str(), n.medium)))
        .collect();
    let Some((pg, bound)) = c.postgres() else {
        let mut inserted = 0;
        for n in notices {
            inserted += c
                .execute(
                    Stmt::new(format!(
                        "INSERT INTO notices ({INSERTED}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', 0, $11, $12, \
                         $13) {ON_CONFLICT}"
                    ))
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind(&n.notice_key)
                    .bind(n.medium.as_str())
                    .bind(n.kind.as_str())
                    .bind(&n.subject_ref)
                    .bind(&n.recipient)
                    .bind(&n.language)
                    .bind(&n.routing_key)
                    .bind(n.event.as_slice())
                    .bind(n.has_address)
                    .bind(n.not_before)
                    .bind(n.event_at)
                    .bind(now),
                )
                .await?;
        }
        return Ok(inserted);
    };
    if notices.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&NewNotice) -> &str| notices.iter().map(|n| f(n)).collect::<Vec<_>>();
    let ids: Vec<String> = notices
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let sql = format!(
        "INSERT INTO notices ({INSERTED}) \
         SELECT id, notice_key, medium, kind, subject_ref, recipient, language, routing_key, \
         event, has_address, 'queued', 0, not_before, event_at, $13 \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::text[], $9::bytea[], $10::bool[], $11::timestamptz[], \
         $12::timestamptz[]) AS u(id, notice_key, medium, kind, subject_ref, recipient, \
         language, routing_key, event, has_address, not_before, event_at) {ON_CONFLICT}"
    );
    let insert = sqlx::query(&sql)
        .bind(&ids)
        .bind(column(|n| &n.notice_key))
        .bind(column(|n| n.medium.as_str()))
        .bind(column(|n| n.kind.as_str()))
        .bind(column(|n| &n.subject_ref))
        .bind(column(|n| &n.recipient))
        .bind(column(|n| &n.language))
        .bind(column(|n| &n.routing_key))
        .bind(
            notices
                .iter()
                .map(|n| n.event.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(notices.iter().map(|n| n.has_address).collect::<Vec<_>>())
        .bind(notices.iter().map(|n| n.not_before).collect::<Vec<_>>())
        .bind(notices.iter().map(|n| n.event_at).collect::<Vec<_>>())
        .bind(now)
        .execute(pg);
    Ok(answered_within(bound, insert).await?.rows_affected())
}

impl Store {
    /// A message sent at once rather than queued (an access code): recorded
    /// as it went, sent or failed for good, with no event kept.
    pub async fn record_immediate(
        &self,
        n: &NewNotice,
        failure: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let state = if failure.is_some() {
            DeliveryState::Failed
        } else {
            DeliveryState::Sent
        };
        self.db
            .execute(
                Stmt::new(
                    "INSERT INTO notices (id, notice_key, medium, kind, subject_ref, recipient, \
                     language, routing_key, event, has_address, state, failure, attempts, \
                     not_before, event_at, created_at, first_try_at, sent_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 1, $13, $13, $13, $13, $14)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&n.notice_key)
                .bind(n.medium.as_str())
                .bind(n.kind.as_str())
                .bind(&n.subject_ref)
                .bind(&n.recipient)
                .bind(&n.language)
                .bind(&n.routing_key)
                .bind(n.event.as_slice())
                .bind(n.has_address)
                .bind(state.as_str())
                .bind(failure.clone())
                .bind(now)
                .bind(failure.is_none().then_some(now)),
            )
            .await?;
        Ok(())
    }
}

/// Whether a step of the appointment later than `at` is already planned:
/// then a step at `at` arrived out of order and tells nothing current.
pub async fn later_step_planned(
    c: &mut Conn<'_>,
    appointment_id: &str,
    at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let n: i64 = c
        .scalar(
            Stmt::new(
                "SELECT COUNT(*) FROM notices WHERE subject_ref = $1 AND event_at > $2 \
                 AND kind IN ('appointment_booked', 'appointment_moved', 'appointment_cancelled')",
            )
            .bind(appointment_id)
            .bind(at),
        )
        .await?;
    Ok(n > 0)
}

/// Cancels the queued reminders of an appointment, but the one for
/// `keep` (the reminder of its current time, if any).
pub async fn cancel_reminders(
    c: &mut Conn<'_>,
    appointment_id: &str,
    keep: &str,
) -> Result<u64, sqlx::Error> {
    c.execute(
        Stmt::new(
            "UPDATE notices SET state = 'cancelled' \
             WHERE subject_ref = $1 AND kind = $2 AND state = 'queued' AND notice_key <> $3",
        )
        .bind(appointment_id)
        .bind(NoticeKind::AppointmentReminder.as_str())
        .bind(keep)
        .planned_each_time(),
    )
    .await
}

/// A message handed over, to be marked so.
#[derive(Debug)]
pub struct SentMark {
    pub id: String,
    /// When it was handed over.
    pub at: DateTime<Utc>,
    /// The SMS provider's id for it, to ask for its report.
    pub provider_id: Option<String>,
    /// The provider said it reached the person (not only that it took it).
    pub delivered: bool,
}

#[derive(Clone)]
pub struct Store {
    pub db: Database,
}

impl Store {
    /// Takes the queued messages due at `now` that no sender holds, up to
    /// `limit`, oldest first, for this sender until `until`: one statement
    /// for the whole batch, where a lease per message was a transaction
    /// (and a WAL flush) per message. Two senders never take the same one
    /// (`SKIP LOCKED` on PostgreSQL; SQLite has one writer at a time).
    pub async fn lease_due(
        &self,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<NoticeRow>, sqlx::Error> {
        let lock = self.db.sql_backend().for_update_skip_locked();
        let mut tx = self.db.begin_write().await?;
        tx.conn().walk_queue_in_order().await?;
        let mut rows: Vec<NoticeRow> = tx
            .conn()
            .fetch_all(
                Stmt::new(format!(
                    "UPDATE notices SET lease_until = $2 WHERE id IN (SELECT id FROM notices \
                     WHERE state = 'queued' AND not_before <= $1 \
                     AND (lease_until IS NULL OR lease_until < $1) \
                     ORDER BY not_before LIMIT $3 {lock}) RETURNING {COLUMNS}"
                ))
                .bind(now)
                .bind(until)
                .bind(limit)
                .planned_each_time(),
            )
            .await?;
        tx.commit().await?;
        // RETURNING keeps no order.
        rows.sort_by_key(|r| r.not_before);
        Ok(rows)
    }

    /// Holds a message this sender leased until `held_until` for longer,
    /// until `until`; false when its lease is no longer this sender's (it
    /// ran out and another sender took it, or it was settled).
    pub async fn extend_lease(
        &self,
        id: &str,
        held_until: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let n = self
            .db
            .execute(
                Stmt::new(
                    "UPDATE notices SET lease_until = $3 \
                     WHERE id = $1 AND state = 'queued' AND lease_until = $2",
                )
                .bind(id)
                .bind(held_until)
                .bind(until)
                .planned_each_time(),
            )
            .await?;
        Ok(n == 1)
    }

    /// Messages handed over (to the relay, the SMS provider, the mailroom),
    /// marked in ONE transaction: one commit, and one WAL flush, for a
    /// sender's batch rather than one per message. `letters` are the
    /// requests for the paper ones, put in the outbox in the same
    /// transaction: a letter is sent once its request is there.
    pub async fn mark_sent(
        &self,
        sent: &[SentMark],
        letters: &[OutgoingMessage],
    ) -> Result<(), sqlx::Error> {
        if sent.is_empty() {
            return Ok(());
        }
        const SET: &str = "state = m.state, sent_at = m.at, \
             delivered_at = CASE WHEN m.state = 'delivered' THEN m.at ELSE NULL END, \
             provider_id = m.provider_id, attempts = attempts + 1, \
             first_try_at = COALESCE(first_try_at, m.at), lease_until = NULL, \
             failure = NULL";
        let state = |m: &SentMark| {
            if m.delivered {
                DeliveryState::Delivered
            } else {
                DeliveryState::Sent
            }
        };
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        if let Some((pg, bound)) = c.postgres() {
            // One statement for the batch; planned with its arrays each
            // time (see `Stmt::planned_each_time`).
            let sql = format!(
                "UPDATE notices SET {SET} \
                 FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[]) \
                 AS m(id, state, at, provider_id) \
                 WHERE notices.id = m.id AND notices.state = 'queued'"
            );
            let update = sqlx::query(&sql)
                .bind(sent.iter().map(|m| m.id.as_str()).collect::<Vec<_>>())
                .bind(sent.iter().map(|m| state(m).as_str()).collect::<Vec<_>>())
                .bind(sent.iter().map(|m| m.at).collect::<Vec<_>>())
                .bind(
                    sent.iter()
                        .map(|m| m.provider_id.as_deref())
                        .collect::<Vec<_>>(),
                )
                .persistent(false)
                .execute(pg);
            answered_within(bound, update).await?;
        } else {
            for m in sent {
                c.execute(
                    Stmt::new(format!(
                        "UPDATE notices SET {SET} \
                         FROM (SELECT $1 AS id, $2 AS state, $3 AS at, $4 AS provider_id) AS m \
                         WHERE notices.id = m.id AND notices.state = 'queued'"
                    ))
                    .bind(m.id.as_str())
                    .bind(state(m).as_str())
                    .bind(m.at)
                    .bind(&m.provider_id),
                )
                .await?;
            }
        }
        c.enqueue_all(letters).await?;
        tx.commit().await
    }

    /// A failed try: queued again at `retry_at`, or failed for good when
    /// `retry_at` is `None`.
    pub async fn mark_failed(
        &self,
        id: &str,
        now: DateTime<Utc>,
        why: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), sqlx::Error> {
        let (state, not_before) = match retry_at {
            Some(at) => (DeliveryState::Queued, at),
            None => (DeliveryState::Failed, now),
        };
        self.db
            .execute(
                Stmt::new(
                    "UPDATE notices SET state = $2, failure = $3, not_before = $4, \
                     attempts = attempts + 1, first_try_at = COALESCE(first_try_at, $5), \
                     lease_until = NULL WHERE id = $1 AND state = 'queued'",
                )
                .bind(id)
                .bind(state.as_str())
                .bind(why)
                .bind(not_before)
                .bind(now)
                .planned_each_time(),
            )
            .await?;
        Ok(())
    }

    /// What the provider said of an SMS handed to it.
    pub async fn mark_reported(
        &self,
        id: &str,
        now: DateTime<Utc>,
        delivered: bool,
    ) -> Result<(), sqlx::Error> {
        let stmt = if delivered {
            Stmt::new(
                "UPDATE notices SET state = 'delivered', delivered_at = $2 WHERE id = $1 AND state = 'sent'",
            )
        } else {
            Stmt::new(
                "UPDATE notices SET state = 'failed', failure = 'not delivered to the phone' \
                 WHERE id = $1 AND state = 'sent'",
            )
        };
        self.db.execute(stmt.bind(id).bind(now)).await?;
        Ok(())
    }

    /// SMS handed to the provider since `since`, waiting for its report.
    pub async fn awaiting_report(
        &self,
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<NoticeRow>, sqlx::Error> {
        self.db
            .fetch_all(
                Stmt::new(format!(
                    "SELECT {COLUMNS} FROM notices WHERE state = 'sent' AND provider_id IS NOT NULL \
                     AND sent_at >= $1 ORDER BY COALESCE(checked_at, sent_at) LIMIT $2"
                ))
                .bind(since)
                .bind(limit),
            )
            .await
    }

    /// Asked the provider about `id` just now.
    pub async fn mark_checked(&self, id: &str, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        self.db
            .execute(
                Stmt::new("UPDATE notices SET checked_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now),
            )
            .await?;
        Ok(())
    }

    /// Forgets messages in a final state created before `before`: the
    /// events they keep hold personal data.
    pub async fn purge(&self, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        self.db
            .execute(
                Stmt::new(
                    "DELETE FROM notices WHERE created_at < $1 \
                     AND state IN ('sent', 'delivered', 'failed', 'cancelled')",
                )
                .bind(before),
            )
            .await
    }

    /// Every message of one notice: its medium and where it stands.
    pub async fn states_of(
        &self,
        notice_key: &str,
    ) -> Result<Vec<(Medium, DeliveryState)>, sqlx::Error> {
        let rows: Vec<(String, String)> = self
            .db
            .fetch_all(
                Stmt::new("SELECT medium, state FROM notices WHERE notice_key = $1")
                    .bind(notice_key),
            )
            .await?;
        rows.into_iter()
            .map(|(m, s)| Ok((stored(m)?, stored(s)?)))
            .collect()
    }

    /// Every message about a dossier, report or appointment, oldest first.
    pub async fn of_subject(
        &self,
        subject_ref: &str,
        limit: i64,
    ) -> Result<Vec<NoticeRow>, sqlx::Error> {
        self.db
            .fetch_all(
                Stmt::new(format!(
                    "SELECT {COLUMNS} FROM notices WHERE subject_ref = $1 \
                     ORDER BY created_at, medium LIMIT $2"
                ))
                .bind(subject_ref)
                .bind(limit),
            )
            .await
    }

    /// Notices of `kind` none of whose messages reached the person on a
    /// medium that carries the document (e-mail or paper; an SMS only says
    /// one is on its way).
    /// Only notices made since `since` count: an alert clears once the
    /// case is old, and the query reads the recent rows only.
    pub async fn unreached(
        &self,
        kind: NoticeKind,
        since: DateTime<Utc>,
    ) -> Result<i64, sqlx::Error> {
        self.db
            .scalar(
                Stmt::new(
                    "SELECT COUNT(DISTINCT notice_key) FROM notices n WHERE kind = $1 \
                     AND created_at >= $2 AND state <> 'cancelled' AND NOT EXISTS \
                     (SELECT 1 FROM notices r WHERE r.notice_key = n.notice_key \
                     AND r.medium <> 'sms' AND r.state IN ('sent', 'delivered'))",
                )
                .bind(kind.as_str())
                .bind(since),
            )
            .await
    }

    /// Notices every message of which failed for good: nobody was told.
    pub async fn lost(&self, since: DateTime<Utc>) -> Result<i64, sqlx::Error> {
        self.db
            .scalar(
                Stmt::new(
                    "SELECT COUNT(*) FROM (SELECT notice_key FROM notices WHERE created_at >= $1 \
                     GROUP BY notice_key \
                     HAVING SUM(CASE WHEN state = 'failed' THEN 0 ELSE 1 END) = 0) lost",
                )
                .bind(since),
            )
            .await
    }

    /// Messages made since `since`, by medium and state, for the figures:
    /// the recent rows only, not the 400 days kept.
    pub async fn counts(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        self.db
            .fetch_all(
                Stmt::new(
                    "SELECT medium, state, COUNT(*) FROM notices WHERE created_at >= $1 \
                     GROUP BY medium, state",
                )
                .bind(since),
            )
            .await
    }
}

/// A code read back from the table; one not in its list is damaged data.
fn stored<T: TryFrom<String, Error = guichet_dossier::codes::UnknownCode>>(
    value: String,
) -> Result<T, sqlx::Error> {
    T::try_from(value).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
