//! The filing ledger: idempotency, reference, receipt and outbox row, in one
//! local transaction. Nothing here is specific to the web: the other channels
//! are meant to reuse it as it is.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use guichet_dossier::{Dossier, Filing, Reference, SCHEMA_VERSION};
use guichet_kit::bus::{DOSSIERS_EXCHANGE, OutgoingMessage};
use guichet_kit::clock::SharedClock;
use guichet_kit::db::Database;
use guichet_kit::{ServiceError, db, outbox, telemetry};
use guichet_proto::convert;
use guichet_proto::v1 as pb;
use prost::Message;
use rand::Rng;

use crate::group_commit;

/// How many fresh references to try when one is already taken.
const REFERENCE_ATTEMPTS: usize = 8;

/// What the person is answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub receipt: pb::Receipt,
    /// False when this answered a replay of an earlier identical filing.
    pub created: bool,
    pub trace_id: String,
}

/// Inserts the filing unless its idempotency key is already there: the same
/// statement on both backends. True when inserted.
macro_rules! insert_filing {
    ($conn:expr, $row:expr) => {{
        let row: &FilingRow<'_> = $row;
        let d = row.dossier;
        sqlx::query(
            "INSERT INTO filings (idempotency_key, fingerprint, reference, legal_filing_date, \
             filed_at, receipt, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&d.filing.idempotency_key)
        .bind(row.fingerprint)
        .bind(d.reference.as_str())
        .bind(d.legal_filing_date)
        .bind(d.filed_at)
        .bind(&row.receipt)
        .bind(row.trace_id)
        .execute($conn)
        .await
        .map(|done| done.rows_affected() == 1)
        .map_err(|e| {
            if db::is_unique_violation(&e) {
                Recorded::ReferenceTaken
            } else {
                Recorded::Failed(Arc::new(e))
            }
        })
    }};
}

#[derive(Clone)]
pub struct Ledger {
    db: Database,
    clock: SharedClock,
    /// PostgreSQL: the group-commit writer (see `group_commit`). SQLite has
    /// one writer anyway and commits locally, one filing per transaction.
    writer: Option<tokio::sync::mpsc::Sender<group_commit::Pending>>,
}

/// One row of `filings`, as both backends store it.
struct FilingRow<'a> {
    dossier: &'a Dossier,
    fingerprint: &'a str,
    receipt: Vec<u8>,
    trace_id: &'a str,
}

impl Ledger {
    /// On PostgreSQL this starts the group-commit writer: call it within
    /// the runtime.
    pub fn new(db: Database, clock: SharedClock) -> Self {
        let writer = match &db {
            Database::Postgres(pool) => Some(group_commit::spawn(pool.clone())),
            Database::Sqlite(_) => None,
        };
        Self { db, clock, writer }
    }

    /// Records `filing` once. The same idempotency key with the same filing
    /// answers the saved receipt; with a different filing it is a conflict.
    pub async fn accept(&self, filing: Filing) -> Result<Accepted, ServiceError> {
        let fingerprint = filing.fingerprint();
        // No lookup of the key first: nearly every filing is new, and the
        // insert itself says when the key is taken (then the saved receipt is
        // answered), so a new filing costs one round trip less.
        let trace_id = telemetry::current_trace_id();
        for _ in 0..REFERENCE_ATTEMPTS {
            let now = self.clock.now();
            let reference =
                Reference::generate(filing.provenance.channel(), now.year(), &mut rand::rng());
            let dossier = Dossier::new(reference, filing.clone(), now, now);
            match self.record(&dossier, &fingerprint, &trace_id, now).await {
                Ok(receipt) => {
                    tracing::info!(
                        dossier = %dossier.reference,
                        channel = %dossier.channel(),
                        procedure = %dossier.filing.procedure,
                        "filing accepted"
                    );
                    return Ok(Accepted {
                        receipt,
                        created: true,
                        trace_id,
                    });
                }
                Err(Recorded::KeyTaken) => {
                    // A retry of an earlier filing, or a concurrent request
                    // with the same key that won the race.
                    if let Some(saved) = self.replay(&filing.idempotency_key, &fingerprint).await? {
                        return Ok(saved);
                    }
                }
                Err(Recorded::ReferenceTaken) => continue,
                Err(Recorded::Failed(e)) => return Err(db_error("recording a filing", &e)),
            }
        }
        Err(ServiceError::new(
            guichet_kit::ErrorKind::Internal,
            "could not allocate a unique reference",
        ))
    }

    async fn replay(&self, key: &str, fingerprint: &str) -> Result<Option<Accepted>, ServiceError> {
        const SQL: &str =
            "SELECT fingerprint, receipt, trace_id FROM filings WHERE idempotency_key = $1";
        let row: Option<(String, Vec<u8>, String)> = match &self.db {
            Database::Postgres(p) => sqlx::query_as(SQL).bind(key).fetch_optional(p).await,
            Database::Sqlite(p) => sqlx::query_as(SQL).bind(key).fetch_optional(p).await,
        }
        .map_err(|e| db_error("reading a filing", &e))?;
        let Some((saved_fingerprint, receipt, trace_id)) = row else {
            return Ok(None);
        };
        if saved_fingerprint != fingerprint {
            return Err(ServiceError::conflict(
                "this idempotency key was already used for a different filing; \
                 use a new key for a new filing",
            ));
        }
        let receipt = pb::Receipt::decode(receipt.as_slice())
            .map_err(|e| ServiceError::internal("decoding a saved receipt", &e))?;
        Ok(Some(Accepted {
            receipt,
            created: false,
            trace_id,
        }))
    }

    async fn record(
        &self,
        dossier: &Dossier,
        fingerprint: &str,
        trace_id: &str,
        now: DateTime<Utc>,
    ) -> Result<pb::Receipt, Recorded> {
        let receipt = receipt_for(dossier, now);
        let message = dossier_message(dossier);
        let row = FilingRow {
            dossier,
            fingerprint,
            receipt: receipt.encode_to_vec(),
            trace_id,
        };
        let inserted = match &self.db {
            Database::Postgres(_) => {
                let Some(writer) = &self.writer else {
                    return Err(Recorded::from(sqlx::Error::PoolClosed));
                };
                let (answer, inserted) = tokio::sync::oneshot::channel();
                let pending = group_commit::Pending {
                    idempotency_key: dossier.filing.idempotency_key.clone(),
                    fingerprint: fingerprint.to_string(),
                    reference: dossier.reference.to_string(),
                    legal_filing_date: dossier.legal_filing_date,
                    filed_at: dossier.filed_at,
                    receipt: row.receipt,
                    trace_id: trace_id.to_string(),
                    message,
                    answer,
                };
                // A writer that is gone (shutting down) is an unavailable
                // database for the person: try again shortly.
                writer
                    .send(pending)
                    .await
                    .map_err(|_| Recorded::from(sqlx::Error::PoolClosed))?;
                inserted
                    .await
                    .map_err(|_| Recorded::from(sqlx::Error::PoolClosed))?
                    .map_err(Recorded::Failed)?
            }
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(Recorded::from)?;
                let inserted = insert_filing!(&mut *tx, &row)?;
                if inserted {
                    outbox::enqueue_sqlite(&mut tx, &message).await?;
                    tx.commit().await?;
                }
                inserted
            }
        };
        if inserted {
            Ok(receipt)
        } else {
            Err(Recorded::KeyTaken)
        }
    }
}

enum Recorded {
    KeyTaken,
    ReferenceTaken,
    /// Shared: one failed group commit answers every filing in it.
    Failed(Arc<sqlx::Error>),
}

impl From<sqlx::Error> for Recorded {
    fn from(e: sqlx::Error) -> Self {
        Recorded::Failed(Arc::new(e))
    }
}

fn db_error(context: &str, e: &sqlx::Error) -> ServiceError {
    ServiceError::database("the filing service", context, e)
}

fn receipt_for(dossier: &Dossier, now: DateTime<Utc>) -> pb::Receipt {
    pb::Receipt {
        reference: dossier.reference.to_string(),
        channel: convert::channel_to_pb(dossier.channel()) as i32,
        legal_filing_date: Some(convert::date_to_pb(dossier.legal_filing_date)),
        issued_at: Some(convert::timestamp_to_pb(now)),
        documents: convert::filing_to_pb(&dossier.filing).documents,
        verification_code: verification_code(),
    }
}

/// Eight characters a third party types to check a receipt.
fn verification_code() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The dossier as published on `guichet.dossiers`, with the current trace.
pub fn dossier_message(dossier: &Dossier) -> OutgoingMessage {
    OutgoingMessage::traced(
        DOSSIERS_EXCHANGE,
        dossier.channel().submitted_routing_key(),
        convert::dossier_to_pb(dossier).encode_to_vec(),
    )
    .with_header("x-guichet-reference", dossier.reference.to_string())
    .with_header("x-guichet-schema-version", SCHEMA_VERSION.to_string())
}
