//! Uploads: a batch and its pages, recorded once per idempotency key; the
//! claim a reader takes on a batch; what reading found, written at once.

use chrono::{DateTime, Utc};
use guichet_dossier::idempotency;
use guichet_kit::sql::Stmt;

use super::rows::{BATCH_COLUMNS, BatchRow, PAGE_COLUMNS, PageRow};
use super::{NewBatch, NewEnvelope, PageReading, Store, StoreError};

impl Store {
    /// Records a batch and its pages; the same key again with the same
    /// upload returns the first batch (`false`: nothing new), with another
    /// upload `KeyReused`.
    pub async fn create_batch(
        &self,
        b: &NewBatch,
        now: DateTime<Utc>,
    ) -> Result<(String, bool), StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let postmarks = serde_json::to_string(&b.postmark_dates)?;
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        let inserted = c
            .execute(
                Stmt::new(
                    "INSERT INTO postal_batches (id, idempotency_key, station_id, \
                     reception_date, postmark_dates, state, received_at, request_fingerprint) \
                     VALUES ($1, $2, $3, $4, $5, 'stored', $6, $7) \
                     ON CONFLICT (idempotency_key) DO NOTHING",
                )
                .bind(&id)
                .bind(&b.idempotency_key)
                .bind(&b.station_id)
                .bind(&b.reception_date)
                .bind(postmarks)
                .bind(now)
                .bind(&b.fingerprint),
            )
            .await?
            == 1;
        if !inserted {
            let (existing, stored): (String, Option<String>) = c
                .fetch_one(
                    Stmt::new(
                        "SELECT id, request_fingerprint FROM postal_batches \
                         WHERE idempotency_key = $1",
                    )
                    .bind(&b.idempotency_key),
                )
                .await?;
            if !idempotency::same_request(stored.as_deref(), &b.fingerprint) {
                return Err(StoreError::KeyReused);
            }
            return Ok((existing, false));
        }
        for (seq, (sha, media, size)) in b.pages.iter().enumerate() {
            c.execute(
                Stmt::new(
                    "INSERT INTO postal_pages (batch_id, seq, sha256, media_type, size_bytes) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&id)
                .bind(seq as i32 + 1)
                .bind(sha)
                .bind(media)
                .bind(*size as i64),
            )
            .await?;
        }
        tx.commit().await?;
        Ok((id, true))
    }

    /// Claims the oldest batch not read yet for `lease`, if any.
    pub async fn claim_batch(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<BatchRow>, StoreError> {
        let candidate: Option<String> = self
            .db
            .scalar_optional(
                // Fair between stations: the batch of the station with the
                // fewest batches being read goes first, then the oldest.
                Stmt::new(
                    "SELECT b.id FROM postal_batches b WHERE b.state = 'stored' \
                     AND (b.lease_until IS NULL OR b.lease_until < $1) \
                     ORDER BY (SELECT count(*) FROM postal_batches r \
                       WHERE r.station_id = b.station_id AND r.state = 'stored' \
                       AND r.lease_until >= $1), b.received_at LIMIT 1",
                )
                .bind(now),
            )
            .await?;
        let Some(id) = candidate else {
            return Ok(None);
        };
        let claimed = self
            .db
            .execute(
                Stmt::new(
                    "UPDATE postal_batches SET lease_until = $1 WHERE id = $2 \
                     AND state = 'stored' AND (lease_until IS NULL OR lease_until < $3)",
                )
                .bind(now + lease)
                .bind(&id)
                .bind(now)
                // The partial index of stored batches must not become the
                // plan for a claim by id (see `Stmt::planned_each_time`).
                .planned_each_time(),
            )
            .await?;
        if claimed == 0 {
            return Ok(None);
        }
        self.batch(&id).await.map(Some)
    }

    pub async fn batch(&self, id: &str) -> Result<BatchRow, StoreError> {
        self.by_id(
            ("postal_batches", BATCH_COLUMNS),
            "batch",
            id,
            StoreError::NoBatch,
        )
        .await
    }

    /// Whether `sha256` is a scanned page (and not a letter or an upload,
    /// which the document store also holds).
    pub async fn is_page(&self, sha256: &str) -> Result<bool, StoreError> {
        let found: Option<String> = self
            .db
            .scalar_optional(
                Stmt::new("SELECT sha256 FROM postal_pages WHERE sha256 = $1 LIMIT 1").bind(sha256),
            )
            .await?;
        Ok(found.is_some())
    }

    pub async fn pages_of_batch(&self, id: &str) -> Result<Vec<PageRow>, StoreError> {
        self.rows(
            || format!("a page of batch {id}"),
            Stmt::new(format!(
                "SELECT {PAGE_COLUMNS} FROM postal_pages WHERE batch_id = $1 ORDER BY seq"
            ))
            .bind(id),
        )
        .await
    }

    pub async fn pages_of_envelope(&self, id: &str) -> Result<Vec<PageRow>, StoreError> {
        self.rows(
            || format!("a page of envelope {id}"),
            Stmt::new(format!(
                "SELECT {PAGE_COLUMNS} FROM postal_pages WHERE envelope_id = $1 \
                 AND role <> 'separator' ORDER BY seq"
            ))
            .bind(id),
        )
        .await
    }

    /// Writes what reading found: each page's role and envelope, the
    /// envelopes, and the batch as read, all at once.
    pub async fn record_reading(
        &self,
        batch_id: &str,
        pages: &[PageReading],
        envelopes: &[NewEnvelope],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let batch = self.batch(batch_id).await?;
        let mut tx = self.db.begin_write().await?;
        let mut c = tx.conn();
        for e in envelopes {
            c.execute(
                Stmt::new(
                    "INSERT INTO postal_envelopes (id, batch_id, seq, page_count, state, \
                     station_id, postmark_date, reception_date, form_id, code_problem, fields, \
                     created_at) \
                     VALUES ($1, $2, $3, $4, 'keying', $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&e.id)
                .bind(batch_id)
                .bind(e.seq)
                .bind(e.page_count)
                .bind(&batch.station_id)
                .bind(&e.postmark_date)
                .bind(&batch.reception_date)
                .bind(&e.form_id)
                .bind(&e.code_problem)
                .bind(serde_json::to_string(&e.fields)?)
                .bind(now),
            )
            .await?;
        }
        for p in pages {
            c.execute(
                Stmt::new(
                    "UPDATE postal_pages SET role = $1, code = $2, envelope_id = $3, \
                     ocr_text = $4 WHERE batch_id = $5 AND seq = $6",
                )
                .bind(p.role.as_str())
                .bind(&p.code)
                .bind(&p.envelope_id)
                .bind(&p.ocr_text)
                .bind(batch_id)
                .bind(p.seq),
            )
            .await?;
        }
        c.execute(
            Stmt::new(
                "UPDATE postal_batches SET state = 'read', read_at = $1, lease_until = NULL \
                 WHERE id = $2",
            )
            .bind(now)
            .bind(batch_id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
