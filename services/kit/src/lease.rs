//! One instance at a time for a service's periodic work. Several instances of
//! a service share its database; a sweep or a clock (attestations due, expiry
//! alerts, overdue reports) is done by the instance that holds its named
//! lease, a row in the service's own schema. A task of the holder's renews
//! it every `RENEW_EVERY`, whatever the work is doing; an instance that dies
//! stops renewing, and once the lease has run out (`TTL`) the next instance
//! to ask takes it over and starts its round at once. So the work moves on
//! within half a minute, however long the pause between its rounds.
//!
//! A lease is a row, not a PostgreSQL advisory lock, so it works the same
//! through a pooler in transaction mode (where a session lock would be held
//! by whichever client last used the server connection); on SQLite, which one
//! process uses, it is always the asker's. The work it guards stays
//! idempotent all the same: two holders can overlap for a moment when a round
//! outlasts the lease.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::db::Database;
use crate::shutdown::Shutdown;
use crate::sql::{Backend, Stmt};

/// A named lease as one instance asks for it.
#[derive(Clone, Debug)]
pub struct Lease {
    db: Database,
    name: &'static str,
    holder: String,
    ttl: Duration,
}

/// The lease is taken when nobody holds it or the holder let it run out,
/// renewed when the asker already holds it, and left alone otherwise; the row
/// comes back only when the asker holds it afterwards. Expiry is the
/// database's clock, the one every instance shares.
const TAKE_POSTGRES: &str = "INSERT INTO leases (name, holder, expires_at) \
     VALUES ($1, $2, now() + make_interval(secs => $3::double precision / 1000)) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE leases.holder = excluded.holder OR leases.expires_at < now() \
     RETURNING holder";
/// One process uses a SQLite file (the embedded default), so a row found there
/// is a past run's: the asker always holds the lease.
const TAKE_SQLITE: &str = "INSERT INTO leases (name, holder, expires_at) \
     VALUES ($1, $2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || ($3 / 1000.0) || ' seconds')) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     RETURNING holder";
const RELEASE: &str = "DELETE FROM leases WHERE name = $1 AND holder = $2";

impl Lease {
    /// The lease `name` for this instance, held for `ttl` after each renewal.
    /// `ttl` must outlast a round of the work plus the pause between rounds,
    /// or the lease changes hands while its holder is alive.
    pub fn new(db: Database, name: &'static str, ttl: Duration) -> Self {
        Self {
            db,
            name,
            holder: instance_id(),
            ttl,
        }
    }

    /// Who this instance is, as the `leases` table shows it.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes or renews the lease; true when this instance holds it now.
    pub async fn hold(&self) -> Result<bool, sqlx::Error> {
        let sql = match self.db.sql_backend() {
            Backend::Postgres => TAKE_POSTGRES,
            Backend::Sqlite => TAKE_SQLITE,
        };
        let millis = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        let held: Option<String> = self
            .db
            .scalar_optional(
                Stmt::new(sql)
                    .bind(self.name)
                    .bind(self.holder.as_str())
                    .bind(millis),
            )
            .await?;
        Ok(held.is_some())
    }

    /// Gives the lease up (a clean shutdown), so another instance need not
    /// wait for it to run out.
    pub async fn release(&self) -> Result<(), sqlx::Error> {
        self.db
            .execute(
                Stmt::new(RELEASE)
                    .bind(self.name)
                    .bind(self.holder.as_str()),
            )
            .await
            .map(|_| ())
    }
}

/// How often a kept lease is renewed, or asked for by an instance that does
/// not hold it.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);

/// How long a kept lease lasts unrenewed: three renewals, so one slow
/// renewal does not hand the work over.
pub const TTL: Duration = Duration::from_secs(30);

impl Lease {
    /// Keeps asking for the lease every `renew_every` until `shutdown`, then
    /// gives it up if held. The answer says, at each moment, whether this
    /// instance holds it; it changes when the lease changes hands, so the
    /// work can start at once. A renewal that fails counts as not held: the
    /// work pauses rather than risk running beside another holder for long.
    pub fn keep(self, renew_every: Duration, shutdown: Shutdown) -> watch::Receiver<bool> {
        let (held_now, held) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                // A renewal that hangs counts as failed too: waiting on it,
                // this instance would go on working after its lease ran out
                // and another took it.
                let held = match tokio::time::timeout(renew_every, self.hold()).await {
                    Ok(Ok(held)) => held,
                    Ok(Err(e)) => {
                        tracing::warn!(lease = self.name, error = %e, "cannot renew the lease, will retry");
                        false
                    }
                    Err(_) => {
                        tracing::warn!(lease = self.name, within = ?renew_every, "the lease's renewal did not finish in time, will retry");
                        false
                    }
                };
                held_now.send_if_modified(|was| std::mem::replace(was, held) != held);
                tokio::select! {
                    _ = tokio::time::sleep(renew_every) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            if *held_now.borrow()
                && let Err(e) = self.release().await
            {
                tracing::debug!(lease = self.name, error = %e, "lease not given up; it runs out by itself");
            }
            held_now.send_replace(false);
        });
        held
    }
}

/// A service's periodic work under the lease `name` of `db`: `round(held)`
/// runs at start, then every `every`, and at once whenever the lease changes
/// hands, until `shutdown`. `held` says whether this instance holds the
/// lease now; what only one instance may do runs only then.
pub async fn in_rounds<F, Fut>(
    db: Database,
    name: &'static str,
    every: Duration,
    shutdown: Shutdown,
    mut round: F,
) where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let lease = Lease::new(db, name, TTL);
    let holder = lease.holder().to_string();
    let mut held = lease.keep(RENEW_EVERY, shutdown.clone());
    loop {
        let now_held = *held.borrow_and_update();
        round(now_held).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = held.changed() => {
                if changed.is_err() {
                    break;
                }
                tracing::info!(lease = name, holder, held = *held.borrow(), "lease changed hands");
            }
            _ = shutdown.cancelled() => break,
        }
    }
}

/// Host, process and a number unique in the process: two instances started
/// in one process (the tests do) are still two holders.
fn instance_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!(
        "{host}/{}/{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
