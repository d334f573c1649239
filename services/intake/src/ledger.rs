//! The filing ledger: idempotency, reference, receipt and outbox row, in one
//! local transaction. Nothing here is specific to the web: the other channels
//! are meant to reuse it as it is.

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use guichet_dossier::{Dossier, Filing, Reference, SCHEMA_VERSION};
use guichet_kit::bus::{DOSSIERS_EXCHANGE, OutgoingMessage};
use guichet_kit::clock::SharedClock;
use guichet_kit::db::Database;
use guichet_kit::sql::Stmt;
use guichet_kit::{ServiceError, db, telemetry};
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

#[derive(Clone)]
pub struct Ledger {
    db: Database,
    clock: SharedClock,
    /// PostgreSQL: the group-commit writer (see `group_commit`). SQLite has
    /// one writer anyway and commits locally, one filing per transaction.
    writer: Option<tokio::sync::mpsc::Sender<group_commit::Pending>>,
}

/// One row of `filings`, as both backends store it.
pub(crate) struct NewFiling {
    pub idempotency_key: String,
    pub fingerprint: String,
    pub reference: String,
    pub legal_filing_date: NaiveDate,
    pub filed_at: DateTime<Utc>,
    /// The receipt answered, kept to answer a replay with the same.
    pub receipt: Vec<u8>,
    pub trace_id: String,
}

/// A filing as saved, to answer a replay of it.
#[derive(sqlx::FromRow)]
struct SavedFiling {
    fingerprint: String,
    #[sqlx(try_from = "Vec<u8>")]
    receipt: pb::Receipt,
    trace_id: String,
}

/// Inserts the filing unless its idempotency key is already there; one row
/// changed when inserted.
fn insert_filing(f: &NewFiling) -> Stmt {
    Stmt::new(
        "INSERT INTO filings (idempotency_key, fingerprint, reference, legal_filing_date, \
         filed_at, receipt, trace_id) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(f.idempotency_key.as_str())
    .bind(f.fingerprint.as_str())
    .bind(f.reference.as_str())
    .bind(f.legal_filing_date)
    .bind(f.filed_at)
    .bind(f.receipt.as_slice())
    .bind(f.trace_id.as_str())
}

impl Ledger {
    /// On PostgreSQL this starts the group-commit writer, which waits for
    /// the database's answer as long as the pool's bound at most
    /// (`Pool::answer_bound`, carried by `Database::Postgres`): call it
    /// within the runtime.
    pub fn new(db: Database, clock: SharedClock) -> Self {
        let writer = match &db {
            Database::Postgres(pool, bound) => Some(group_commit::spawn(pool.clone(), *bound)),
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
        let saved: Option<SavedFiling> = self
            .db
            .fetch_optional(
                Stmt::new(
                    "SELECT fingerprint, receipt, trace_id FROM filings WHERE idempotency_key = $1",
                )
                .bind(key),
            )
            .await
            .map_err(db::reading(|| format!("the filing with key {key}")))
            .map_err(|e: ReadError| e.into_service_error("reading a filing"))?;
        let Some(saved) = saved else {
            return Ok(None);
        };
        if saved.fingerprint != fingerprint {
            return Err(ServiceError::conflict(
                "this idempotency key was already used for a different filing; \
                 use a new key for a new filing",
            ));
        }
        Ok(Some(Accepted {
            receipt: saved.receipt,
            created: false,
            trace_id: saved.trace_id,
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
        let filing = NewFiling {
            idempotency_key: dossier.filing.idempotency_key.clone(),
            fingerprint: fingerprint.to_string(),
            reference: dossier.reference.to_string(),
            legal_filing_date: dossier.legal_filing_date,
            filed_at: dossier.filed_at,
            receipt: receipt.encode_to_vec(),
            trace_id: trace_id.to_string(),
        };
        let message = dossier_message(dossier);
        let inserted = match &self.writer {
            Some(writer) => {
                let (answer, inserted) = tokio::sync::oneshot::channel();
                let pending = group_commit::Pending {
                    filing,
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
            None => self.record_alone(&filing, &message).await?,
        };
        if inserted {
            Ok(receipt)
        } else {
            Err(Recorded::KeyTaken)
        }
    }

    /// One filing in its own transaction, with its outbox row.
    async fn record_alone(
        &self,
        filing: &NewFiling,
        message: &OutgoingMessage,
    ) -> Result<bool, Recorded> {
        let mut tx = self.db.begin_write().await?;
        let inserted = tx
            .conn()
            .execute(insert_filing(filing))
            .await
            .map_err(|e| {
                if db::is_unique_violation(&e) {
                    Recorded::ReferenceTaken
                } else {
                    Recorded::from(e)
                }
            })?
            == 1;
        if inserted {
            tx.conn().enqueue(message).await?;
            tx.commit().await?;
        }
        Ok(inserted)
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

/// What reading the ledger back can meet.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Unreadable(#[from] db::Unreadable),
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

impl ReadError {
    fn into_service_error(self, context: &str) -> ServiceError {
        match self {
            ReadError::Unreadable(e) => ServiceError::internal(context, &e),
            ReadError::Db(e) => db_error(context, &e),
        }
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
