//! Titles known to the system and the alerts before they expire: the holder
//! is warned at set offsets (120, 60 and 30 days by default) on their own
//! channel, and told by when to file the renewal.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use guichet_dossier::alerts::alerts_due;
use guichet_dossier::{RawTitleRecord, TitleRecord};
use guichet_kit::bus::{EVENTS_EXCHANGE, OutgoingMessage};
use guichet_kit::db::Database;
use guichet_kit::sql::Stmt;
use guichet_proto::{convert, v1 as pb};
use prost::Message;

/// File the renewal this many months before expiry: the usual two months
/// instruction takes, so the new title is ready in time.
pub const RENEW_MONTHS_BEFORE: u32 = 2;

/// A row with its line (CSV) or position (JSON) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub line: usize,
    pub problems: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: usize,
    /// Already known (same kind and number).
    pub known: usize,
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {0}")]
    Read(String, #[source] std::io::Error),
    #[error("{0} is neither .csv nor .json")]
    Format(String),
    #[error("{0} is not a JSON array of titles")]
    Json(String, #[source] serde_json::Error),
    #[error("{0}: the CSV header must name the columns of a title record")]
    Csv(String, #[source] csv::Error),
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

/// Reads a CSV (with a header line) or a JSON array of title records; each
/// record is checked like a filing, and bad rows are reported by line.
pub fn read_file(
    path: &Path,
    today: NaiveDate,
) -> Result<(Vec<TitleRecord>, Vec<Rejected>), ImportError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ImportError::Read(name.clone(), e))?;
    let raws: Vec<(usize, Result<RawTitleRecord, String>)> =
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => {
                let values: Vec<serde_json::Value> =
                    serde_json::from_str(&text).map_err(|e| ImportError::Json(name.clone(), e))?;
                values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (i + 1, serde_json::from_value(v).map_err(|e| e.to_string())))
                    .collect()
            }
            Some("csv") => {
                let mut reader = csv::ReaderBuilder::new()
                    .trim(csv::Trim::All)
                    .from_reader(text.as_bytes());
                reader
                    .headers()
                    .map_err(|e| ImportError::Csv(name.clone(), e))?;
                reader
                    .deserialize::<RawTitleRecord>()
                    .enumerate()
                    // Line 1 is the header.
                    .map(|(i, r)| (i + 2, r.map_err(|e| e.to_string())))
                    .collect()
            }
            _ => return Err(ImportError::Format(name)),
        };
    let mut records = Vec::new();
    let mut rejected = Vec::new();
    for (line, raw) in raws {
        match raw.and_then(|r| TitleRecord::parse(&r, today).map_err(|v| v.to_string())) {
            Ok(record) => records.push(record),
            Err(problems) => rejected.push(Rejected { line, problems }),
        }
    }
    Ok((records, rejected))
}

const INSERT: &str = "INSERT INTO titles (kind, number, expires_on, prefecture, holder, contact, \
    source, reference, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
    ON CONFLICT (kind, number) DO NOTHING";

/// Records titles; those already known are left as they are.
pub async fn record(
    db: &Database,
    records: &[TitleRecord],
    source: &str,
    reference: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(usize, usize), sqlx::Error> {
    let mut inserted = 0;
    let mut tx = db.begin_write().await?;
    let mut c = tx.conn();
    for r in records {
        let done = c
            .execute(
                Stmt::new(INSERT)
                    .bind(r.title.kind.as_str())
                    .bind(r.title.number.as_str())
                    .bind(r.title.expires_on)
                    .bind(r.contact.address.department.as_str())
                    .bind(convert::applicant_to_pb(&r.holder).encode_to_vec())
                    .bind(convert::contact_to_pb(&r.contact).encode_to_vec())
                    .bind(source)
                    .bind(reference)
                    .bind(now),
            )
            .await?;
        inserted += done as usize;
    }
    tx.commit().await?;
    Ok((inserted, records.len() - inserted))
}

type TitleRow = (i64, String, String, NaiveDate, String, Vec<u8>, Vec<u8>);

/// Sends every alert due today, each once. Returns how many were sent.
pub async fn send_due_alerts(
    db: &Database,
    offsets: &[i64],
    now: DateTime<Utc>,
    today: NaiveDate,
) -> Result<usize, sqlx::Error> {
    let Some(furthest) = offsets.iter().max() else {
        return Ok(0);
    };
    let until = today + chrono::Duration::days(*furthest);
    // Only the titles whose nearest offset reached has no alert yet, as
    // `alerts_due` says, which still decides under the transaction: a round
    // with nothing new to send is one statement, however many titles expire
    // within the furthest offset (a transaction per title before).
    let offsets_table = offsets
        .iter()
        .map(|o| format!("({o})"))
        .collect::<Vec<_>>()
        .join(", ");
    let days_left = db.sql_backend().days_from("$1", "titles.expires_on");
    let due = format!(
        "SELECT id, kind, number, expires_on, prefecture, holder, contact FROM titles \
         WHERE expires_on >= $1 AND expires_on <= $2 AND NOT EXISTS (\
           SELECT 1 FROM title_alerts a WHERE a.title_id = titles.id AND a.offset_days = (\
             SELECT min(column1) FROM (VALUES {offsets_table}) AS offsets \
             WHERE column1 >= {days_left})) \
         ORDER BY expires_on, id"
    );
    const SENT: &str = "SELECT offset_days FROM title_alerts WHERE title_id = $1";
    const MARK: &str = "INSERT INTO title_alerts (title_id, offset_days, sent_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING";
    let mut sent_now = 0;
    let rows: Vec<TitleRow> = db.fetch_all(Stmt::new(due).bind(today).bind(until)).await?;
    for (id, kind, number, expires_on, prefecture, holder, contact) in rows {
        let mut tx = db.begin_write().await?;
        let mut c = tx.conn();
        let sent: Vec<i32> = c.scalars(Stmt::new(SENT).bind(id)).await?;
        let sent: Vec<i64> = sent.into_iter().map(i64::from).collect();
        for offset in alerts_due(expires_on, offsets, &sent, today) {
            let message = match alert_message(
                &kind,
                &number,
                expires_on,
                offset,
                &prefecture,
                &holder,
                &contact,
            ) {
                Ok(m) => m,
                Err(e) => {
                    // One damaged row must not hold back everyone else's
                    // alerts: said loudly, left unmarked.
                    tracing::error!(title_id = id, error = %e, "title row cannot be read; no alert sent");
                    continue;
                }
            };
            let marked = c
                .execute(Stmt::new(MARK).bind(id).bind(offset as i32).bind(now))
                .await?;
            if marked == 0 {
                continue;
            }
            c.enqueue(&message).await?;
            sent_now += 1;
        }
        tx.commit().await?;
    }
    Ok(sent_now)
}

fn alert_message(
    kind: &str,
    number: &str,
    expires_on: NaiveDate,
    offset: i64,
    prefecture: &str,
    holder: &[u8],
    contact: &[u8],
) -> Result<OutgoingMessage, prost::DecodeError> {
    let holder = pb::Applicant::decode(holder)?;
    let contact = pb::Contact::decode(contact)?;
    // Paper reaches everyone: the channel when none was recorded.
    let answer = convert::answer_channel_text(contact.answer_channel)
        .and_then(|a| guichet_dossier::AnswerChannel::parse(&a))
        .map_or("post", |a| a.as_str());
    let renew_by = expires_on
        .checked_sub_months(chrono::Months::new(RENEW_MONTHS_BEFORE))
        .unwrap_or(expires_on);
    let ending: String = number
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let body = pb::TitleExpiryAlert {
        kind: guichet_dossier::TitleKind::parse(kind)
            .map(convert::title_kind_to_pb)
            .unwrap_or(0),
        number_ending: ending,
        expires_on: Some(convert::date_to_pb(expires_on)),
        offset_days: offset as i32,
        renew_by: Some(convert::date_to_pb(renew_by)),
        family_name: holder.family_name,
        given_names: holder.given_names,
        contact: Some(contact),
        prefecture: prefecture.to_string(),
        title_key: guichet_dossier::alerts::title_key(kind, number),
    };
    Ok(OutgoingMessage::traced(
        EVENTS_EXCHANGE,
        format!("title.expiry_alert.{answer}"),
        body.encode_to_vec(),
    ))
}

/// The title a favourable decision grants, recorded so its holder is warned
/// in time for the next renewal.
pub fn record_from_decision(
    dossier: &pb::Dossier,
    title: &pb::CurrentTitle,
    today: NaiveDate,
) -> Option<TitleRecord> {
    let (raw, _) = convert::raw_filing_from_pb(dossier.filing.as_ref()?);
    let a = raw.applicant?;
    let c = raw.contact?;
    let address = c.address.clone().unwrap_or_default();
    let kind = convert::title_kind_text(title.kind)?;
    let record = RawTitleRecord {
        kind: Some(kind),
        number: Some(title.number.clone()),
        expires_on: title
            .expires_on
            .as_ref()
            .and_then(convert::date_from_pb)
            .map(|d| d.to_string()),
        family_name: a.family_name,
        given_names: a.given_names,
        birth_date: a.birth_date,
        nationality: a.nationality,
        foreigner_number: a.foreigner_number,
        email: c.email,
        phone: c.phone,
        address_line1: address.line1,
        postal_code: address.postal_code,
        city: address.city,
        answer_channel: c.answer_channel,
    };
    TitleRecord::parse(&record, today).ok()
}
