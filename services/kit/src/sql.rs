//! Store code written once for both backends, as ordinary functions the
//! compiler checks: a statement is its SQL and its typed arguments (`Stmt`),
//! run on a connection of either backend (`Conn`), inside a transaction
//! (`Tx`) or straight on the pool (`Database`). What differs between
//! PostgreSQL and SQLite (date arithmetic, row locks) is asked of the
//! `Backend`, once, where a store builds its statements.
//!
//! Rows decode through `sqlx::FromRow`, so a row type (or a tuple) must
//! decode on both backends: the trait bounds below say so, and a type that
//! only one backend knows does not compile.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

use crate::bus::OutgoingMessage;
use crate::db::{Database, answered_within};
use crate::inbox::Claim;
use crate::outbox::Enqueue;

/// Which engine a connection talks to, and the bits of SQL that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// Whole days from the date parameter `param` to the date column `column`.
    pub fn days_from(self, param: &str, column: &str) -> String {
        match self {
            Backend::Postgres => format!("({column} - {param}::date)"),
            Backend::Sqlite => format!("(julianday({column}) - julianday({param}))"),
        }
    }

    /// Locks the selected rows until the transaction ends. SQLite has one
    /// writer at a time, which is the lock.
    pub fn for_update(self) -> &'static str {
        match self {
            Backend::Postgres => "FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Locks the selected rows, skipping those another transaction holds.
    pub fn for_update_skip_locked(self) -> &'static str {
        match self {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }
}

/// One argument of a statement, typed as both backends store it.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(Option<String>),
    I16(Option<i16>),
    I32(Option<i32>),
    I64(Option<i64>),
    Bool(Option<bool>),
    Date(Option<NaiveDate>),
    Time(Option<DateTime<Utc>>),
    Bytes(Option<Vec<u8>>),
}

macro_rules! arg_from {
    ($variant:ident, $t:ty) => {
        impl From<$t> for Arg {
            fn from(v: $t) -> Self {
                Arg::$variant(Some(v.into()))
            }
        }
        impl From<Option<$t>> for Arg {
            fn from(v: Option<$t>) -> Self {
                Arg::$variant(v.map(Into::into))
            }
        }
    };
}
arg_from!(Text, String);
arg_from!(Text, &str);
arg_from!(Text, &String);
arg_from!(I16, i16);
arg_from!(I32, i32);
arg_from!(I64, i64);
arg_from!(Bool, bool);
arg_from!(Date, NaiveDate);
arg_from!(Time, DateTime<Utc>);
arg_from!(Bytes, Vec<u8>);
arg_from!(Bytes, &[u8]);

impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}

/// Have PostgreSQL walk a queue's index in order and stop after the batch,
/// for the rest of the transaction. A queue table's statistics are always
/// stale, since its rows come and go faster than autovacuum analyses them.
/// The planner then expects a handful of due rows and picks a bitmap scan,
/// which reads every due row and every index entry left by a row since
/// taken, then sorts them all, for each batch. Measured during a bench
/// (BENCHMARKS.md): the outbox relay's pick took 25-29 ms over 27,000
/// entries for a hundred unsent rows, the notifier's lease 22 ms over
/// 4,000 due notices; walking the index, 0.1-0.2 ms and 0.3-1.3 ms.
/// Walking it also marks the dead entries, which later walks then skip.
pub const WALK_QUEUE_IN_ORDER: &str = "SET LOCAL enable_bitmapscan = off";

/// A statement and its arguments, in order (`$1`, `$2`, ...).
#[derive(Debug, Clone)]
pub struct Stmt {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
    /// Kept prepared on the connection (PostgreSQL may then settle on one
    /// generic plan for it), or planned again at each run.
    persistent: bool,
}

impl Stmt {
    pub fn new(sql: impl Into<Cow<'static, str>>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
            persistent: true,
        }
    }

    /// Planned at each run with its arguments, never kept prepared. For a
    /// statement that finds one row by its key but also names the state a
    /// partial index covers (`WHERE id = $1 AND state = 'queued'`): a
    /// connection that prepared it while the table was empty keeps a
    /// generic plan that walks the partial index, which costs one step per
    /// queued row, for the connection's life (BENCHMARKS.md).
    pub fn planned_each_time(mut self) -> Self {
        self.persistent = false;
        self
    }

    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }
}

/// A nullable column converted through `T`'s `TryFrom` as the row is read:
/// `#[sqlx(try_from = "Option<String>")] outcome: Nullable<Outcome>`. NULL
/// is `None`; a value `T` refuses fails the read. (`Option<T>` cannot be the
/// target itself: a store's crate owns neither it nor `Option<String>`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Nullable<T>(pub Option<T>);

impl<S, T: TryFrom<S>> TryFrom<Option<S>> for Nullable<T> {
    type Error = T::Error;

    fn try_from(value: Option<S>) -> Result<Self, Self::Error> {
        value.map(T::try_from).transpose().map(Nullable)
    }
}

impl<T> std::ops::Deref for Nullable<T> {
    type Target = Option<T>;

    fn deref(&self) -> &Option<T> {
        &self.0
    }
}

/// Rows both backends can decode into `Self`.
pub trait AnyRow:
    for<'r> sqlx::FromRow<'r, PgRow> + for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin
{
}
impl<T> AnyRow for T where
    T: for<'r> sqlx::FromRow<'r, PgRow> + for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// Single values both backends can decode into `Self`.
pub trait AnyValue:
    for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + Send
    + Unpin
{
}
impl<T> AnyValue for T where
    T: for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + Send
        + Unpin
{
}

/// Binds each argument with its own type: the same arms for every kind of
/// query of both backends (`sqlx` gives them no common trait).
macro_rules! bind_all {
    ($query:expr, $args:expr) => {
        $args.into_iter().fold($query, |q, arg| match arg {
            Arg::Text(v) => q.bind(v),
            Arg::I16(v) => q.bind(v),
            Arg::I32(v) => q.bind(v),
            Arg::I64(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Date(v) => q.bind(v),
            Arg::Time(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
        })
    };
}

fn pg_query(sql: &str, args: Vec<Arg>, persistent: bool) -> Query<'_, Postgres, PgArguments> {
    bind_all!(sqlx::query(sql), args).persistent(persistent)
}

fn lite_query(sql: &str, args: Vec<Arg>) -> Query<'_, Sqlite, SqliteArguments<'_>> {
    bind_all!(sqlx::query(sql), args)
}

fn pg_query_as<T: AnyRow>(
    sql: &str,
    args: Vec<Arg>,
    persistent: bool,
) -> QueryAs<'_, Postgres, T, PgArguments> {
    bind_all!(sqlx::query_as(sql), args).persistent(persistent)
}

fn lite_query_as<T: AnyRow>(
    sql: &str,
    args: Vec<Arg>,
) -> QueryAs<'_, Sqlite, T, SqliteArguments<'_>> {
    bind_all!(sqlx::query_as(sql), args)
}

fn pg_scalar<T: AnyValue>(
    sql: &str,
    args: Vec<Arg>,
    persistent: bool,
) -> QueryScalar<'_, Postgres, T, PgArguments> {
    bind_all!(sqlx::query_scalar(sql), args).persistent(persistent)
}

fn lite_scalar<T: AnyValue>(
    sql: &str,
    args: Vec<Arg>,
) -> QueryScalar<'_, Sqlite, T, SqliteArguments<'_>> {
    bind_all!(sqlx::query_scalar(sql), args)
}

/// A connection of either backend, borrowed from a transaction or a pool.
/// On PostgreSQL each statement's answer is waited for at most the pool's
/// answer bound (`db::Pool::answer_bound`): sqlx has no bound of its own,
/// and a connection gone silent mid-statement would hold its caller for
/// good. A local SQLite file cannot fall silent that way.
pub enum Conn<'c> {
    Postgres(&'c mut PgConnection, Duration),
    Sqlite(&'c mut SqliteConnection),
}

impl<'c> Conn<'c> {
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Postgres(..) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The PostgreSQL connection, for the few statements only it can run
    /// (arrays), and the answer bound they are to be run within
    /// (`db::answered_within`); `None` on SQLite.
    pub fn postgres(&mut self) -> Option<(&mut PgConnection, Duration)> {
        match self {
            Conn::Postgres(c, bound) => Some((c, *bound)),
            Conn::Sqlite(_) => None,
        }
    }

    /// Within a transaction, before the statement that takes the head of a
    /// queue table (`ORDER BY ... LIMIT n` along a partial index): see
    /// [`WALK_QUEUE_IN_ORDER`]. Nothing to do on SQLite.
    pub async fn walk_queue_in_order(&mut self) -> Result<(), sqlx::Error> {
        if let Conn::Postgres(c, bound) = self {
            answered_within(*bound, sqlx::query(WALK_QUEUE_IN_ORDER).execute(&mut **c)).await?;
        }
        Ok(())
    }

    /// Runs a statement; the number of rows it changed.
    pub async fn execute(&mut self, s: Stmt) -> Result<u64, sqlx::Error> {
        let Stmt {
            sql,
            args,
            persistent,
        } = s;
        Ok(match self {
            Conn::Postgres(c, bound) => {
                answered_within(*bound, pg_query(&sql, args, persistent).execute(&mut **c))
                    .await?
                    .rows_affected()
            }
            Conn::Sqlite(c) => lite_query(&sql, args)
                .execute(&mut **c)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch_all<T: AnyRow>(&mut self, s: Stmt) -> Result<Vec<T>, sqlx::Error> {
        let Stmt {
            sql,
            args,
            persistent,
        } = s;
        match self {
            Conn::Postgres(c, bound) => {
                let statement = pg_query_as(&sql, args, persistent).fetch_all(&mut **c);
                answered_within(*bound, statement).await
            }
            Conn::Sqlite(c) => lite_query_as(&sql, args).fetch_all(&mut **c).await,
        }
    }

    pub async fn fetch_optional<T: AnyRow>(&mut self, s: Stmt) -> Result<Option<T>, sqlx::Error> {
        let Stmt {
            sql,
            args,
            persistent,
        } = s;
        match self {
            Conn::Postgres(c, bound) => {
                let statement = pg_query_as(&sql, args, persistent).fetch_optional(&mut **c);
                answered_within(*bound, statement).await
            }
            Conn::Sqlite(c) => lite_query_as(&sql, args).fetch_optional(&mut **c).await,
        }
    }

    pub async fn fetch_one<T: AnyRow>(&mut self, s: Stmt) -> Result<T, sqlx::Error> {
        let Stmt {
            sql,
            args,
            persistent,
        } = s;
        match self {
            Conn::Postgres(c, bound) => {
                let statement = pg_query_as(&sql, args, persistent).fetch_one(&mut **c);
                answered_within(*bound, statement).await
            }
            Conn::Sqlite(c) => lite_query_as(&sql, args).fetch_one(&mut **c).await,
        }
    }

    /// The first column of every row.
    pub async fn scalars<T: AnyValue>(&mut self, s: Stmt) -> Result<Vec<T>, sqlx::Error> {
        let Stmt {
            sql,
            args,
            persistent,
        } = s;
        match self {
            Conn::Postgres(c, bound) => {
                let statement = pg_scalar(&sql, args, persistent).fetch_all(&mut **c);
                answered_within(*bound, statement).await
            }
            Conn::Sqlite(c) => lite_scalar(&sql, args).fetch_all(&mut **c).await,
        }
    }

    pub async fn scalar_optional<T: AnyValue>(
        &mut self,
        s: Stmt,
    ) -> Result<Option<T>, sqlx::Error> {
        let Stmt {
            sql,
            args,
            persistent,
        } = s;
        match self {
            Conn::Postgres(c, bound) => {
                let statement = pg_scalar(&sql, args, persistent).fetch_optional(&mut **c);
                answered_within(*bound, statement).await
            }
            Conn::Sqlite(c) => lite_scalar(&sql, args).fetch_optional(&mut **c).await,
        }
    }

    pub async fn scalar<T: AnyValue>(&mut self, s: Stmt) -> Result<T, sqlx::Error> {
        let Stmt {
            sql,
            args,
            persistent,
        } = s;
        match self {
            Conn::Postgres(c, bound) => {
                let statement = pg_scalar(&sql, args, persistent).fetch_one(&mut **c);
                answered_within(*bound, statement).await
            }
            Conn::Sqlite(c) => lite_scalar(&sql, args).fetch_one(&mut **c).await,
        }
    }

    /// Puts a message in the outbox, in this transaction.
    pub async fn enqueue(&mut self, message: &OutgoingMessage) -> Result<(), sqlx::Error> {
        match self {
            Conn::Postgres(c, bound) => answered_within(*bound, c.enqueue(message)).await,
            Conn::Sqlite(c) => c.enqueue(message).await,
        }
    }

    /// Records every message for publication; on PostgreSQL in one
    /// statement.
    pub async fn enqueue_all(&mut self, messages: &[OutgoingMessage]) -> Result<(), sqlx::Error> {
        match self {
            Conn::Postgres(c, bound) => {
                answered_within(*bound, crate::outbox::enqueue_all_postgres(c, messages)).await
            }
            Conn::Sqlite(c) => {
                for message in messages {
                    c.enqueue(message).await?;
                }
                Ok(())
            }
        }
    }

    /// Claims message ids in the inbox; the ones seen before are left out.
    pub async fn claim(
        &mut self,
        message_ids: &[String],
    ) -> Result<std::collections::HashSet<String>, sqlx::Error> {
        match self {
            Conn::Postgres(c, bound) => answered_within(*bound, c.claim(message_ids)).await,
            Conn::Sqlite(c) => c.claim(message_ids).await,
        }
    }
}

/// A connection taken from the pool, for statements outside a transaction.
pub enum Pooled {
    Postgres(PoolConnection<Postgres>, Duration),
    Sqlite(PoolConnection<Sqlite>),
}

impl Pooled {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Postgres(c, bound) => Conn::Postgres(c, *bound),
            Pooled::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

/// A transaction of either backend.
pub enum Tx {
    Postgres(Transaction<'static, Postgres>, Duration),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(t, bound) => Conn::Postgres(t, *bound),
            Tx::Sqlite(t) => Conn::Sqlite(t),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(t, bound) => answered_within(bound, t.commit()).await,
            Tx::Sqlite(t) => t.commit().await,
        }
    }
}

impl Database {
    pub fn sql_backend(&self) -> Backend {
        match self {
            Database::Postgres(..) => Backend::Postgres,
            Database::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Runs one statement on a pooled connection; the rows it changed.
    pub async fn execute(&self, s: Stmt) -> Result<u64, sqlx::Error> {
        self.acquire().await?.conn().execute(s).await
    }

    /// One statement's rows, on a pooled connection.
    pub async fn fetch_all<T: AnyRow>(&self, s: Stmt) -> Result<Vec<T>, sqlx::Error> {
        self.acquire().await?.conn().fetch_all(s).await
    }

    pub async fn fetch_optional<T: AnyRow>(&self, s: Stmt) -> Result<Option<T>, sqlx::Error> {
        self.acquire().await?.conn().fetch_optional(s).await
    }

    /// The first column of every row, on a pooled connection.
    pub async fn scalars<T: AnyValue>(&self, s: Stmt) -> Result<Vec<T>, sqlx::Error> {
        self.acquire().await?.conn().scalars(s).await
    }

    pub async fn scalar_optional<T: AnyValue>(&self, s: Stmt) -> Result<Option<T>, sqlx::Error> {
        self.acquire().await?.conn().scalar_optional(s).await
    }

    pub async fn scalar<T: AnyValue>(&self, s: Stmt) -> Result<T, sqlx::Error> {
        self.acquire().await?.conn().scalar(s).await
    }

    /// A connection for statements run one by one.
    pub async fn acquire(&self) -> Result<Pooled, sqlx::Error> {
        Ok(match self {
            // The pool's `acquire_timeout` bounds the wait and its check.
            Database::Postgres(p, bound) => Pooled::Postgres(p.acquire().await?, *bound),
            Database::Sqlite(p) => Pooled::Sqlite(p.acquire().await?),
        })
    }

    /// A transaction that will write. On SQLite it takes the write lock up
    /// front (IMMEDIATE): a deferred one that reads then writes fails at
    /// once when another connection wrote in between.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Database::Postgres(p, bound) => {
                Tx::Postgres(answered_within(*bound, p.begin()).await?, *bound)
            }
            Database::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// A read-only transaction that sees one state of the database for all
    /// its statements (REPEATABLE READ on PostgreSQL; a SQLite read
    /// transaction is a snapshot from its first read).
    pub async fn begin_snapshot(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Database::Postgres(p, bound) => {
                let begun = p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
                Tx::Postgres(answered_within(*bound, begun).await?, *bound)
            }
            Database::Sqlite(p) => Tx::Sqlite(p.begin().await?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_keep_their_type_and_absence() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let s = Stmt::new("SELECT $1, $2, $3, $4")
            .bind("x")
            .bind(None::<NaiveDate>)
            .bind(d)
            .bind(7_i16);
        assert_eq!(
            s.args,
            vec![
                Arg::Text(Some("x".into())),
                Arg::Date(None),
                Arg::Date(Some(d)),
                Arg::I16(Some(7)),
            ]
        );
    }

    #[test]
    fn a_nullable_column_is_none_converted_or_refused() {
        assert_eq!(Nullable::<u8>::try_from(None::<u16>), Ok(Nullable(None)));
        assert_eq!(Nullable::<u8>::try_from(Some(7_u16)), Ok(Nullable(Some(7))));
        assert!(Nullable::<u8>::try_from(Some(300_u16)).is_err());
        assert_eq!(*Nullable(Some(7_u8)), Some(7));
    }

    #[test]
    fn dialect_differs_only_where_the_engines_do() {
        assert_eq!(
            Backend::Postgres.days_from("$1", "cover_until"),
            "(cover_until - $1::date)"
        );
        assert_eq!(
            Backend::Sqlite.days_from("$1", "cover_until"),
            "(julianday(cover_until) - julianday($1))"
        );
        assert_eq!(Backend::Sqlite.for_update(), "");
        assert_eq!(
            Backend::Postgres.for_update_skip_locked(),
            "FOR UPDATE SKIP LOCKED"
        );
    }
}
