//! The PostgreSQL sink: schema migrations, and one transaction per [`Batch`] made of
//! COPY into staging tables then set-based upserts and deletes.
//!
//! Owns the connection and every SQL statement the processor runs while writing (what
//! a restart reads back is in `checkpoint`). Each transaction also records where every
//! source partition resumes, its running totals, and the watermark the operators
//! reached, so a restart resumes exactly after the last commit. Rows already final in
//! the database are never changed (`WHERE NOT is_final`); accepted events are appended,
//! and dead letters written once per source position.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dataflows::rows::{
    CohortRow, ConversionRow, FunnelRow, ModelRow, PairRow, ProductRow, RfmRow, RiskRow, SessionRow, SimilarRow, SourceProgress, TrafficRow,
};
use postgres::{Client, NoTls, Transaction};

use super::batch::{Batch, Upserts};
use super::tables::{write_dead_letter, write_event, CopyRows, SinkRow, Table, DEAD_LETTERS, EVENTS_RAW};

/// The migrations in `sql/`, applied in order, each once.
const MIGRATIONS: &[(&str, &str)] = &[
    ("001_tables.sql", include_str!("../../sql/001_tables.sql")),
    ("002_source_progress_and_reader.sql", include_str!("../../sql/002_source_progress_and_reader.sql")),
    ("003_exactly_once.sql", include_str!("../../sql/003_exactly_once.sql")),
    ("004_events_raw_append_only.sql", include_str!("../../sql/004_events_raw_append_only.sql")),
    ("005_cohort_retention.sql", include_str!("../../sql/005_cohort_retention.sql")),
    ("006_customer_rfm.sql", include_str!("../../sql/006_customer_rfm.sql")),
    ("007_product_pairs.sql", include_str!("../../sql/007_product_pairs.sql")),
    ("008_product_similar.sql", include_str!("../../sql/008_product_similar.sql")),
    ("009_session_risk.sql", include_str!("../../sql/009_session_risk.sql")),
];

/// Session-level advisory lock held by the one processor writing a database.
const WRITER_LOCK: i64 = 4_242_002;
/// How long a starting processor waits for that lock (a killed predecessor's connection
/// may take a moment to be noticed by the server).
const WRITER_LOCK_WAIT: Duration = Duration::from_secs(15);
/// Test hooks, read once at start: milliseconds to sleep inside each write transaction
/// just before COMMIT (so that a kill often lands mid-commit), and the number of the
/// write transaction carrying messages in which to abort the process just before COMMIT
/// (a crash exactly mid-commit).
const COMMIT_DELAY_VAR: &str = "CLICKFLOW_TEST_COMMIT_DELAY_MS";
const CRASH_IN_COMMIT_VAR: &str = "CLICKFLOW_TEST_CRASH_IN_COMMIT";

/// One row of `pipeline_progress`.
pub struct ProgressRow {
    pub run_id: String,
    pub watermark: Option<i64>,
    pub max_event_time: Option<i64>,
    pub input_rows_per_second: f64,
    pub processed_rows_per_second: f64,
    pub open_sessions: i64,
    pub kafka_lag: Option<i64>,
    pub input_events: i64,
    pub late_events: i64,
    pub duplicate_events: i64,
    pub dead_letters: i64,
    /// The latest progress of each source partition, reported with the row.
    pub sources: Vec<SourceProgress>,
    /// Messages read by this run.
    pub run_input_events: i64,
}

pub struct PgSink {
    client: Client,
    /// Identity of each file source, recorded with its position.
    identities: BTreeMap<String, String>,
    commit_delay: Option<Duration>,
    /// Write transactions left before the test crash, if one is asked for.
    crash_in: Option<u64>,
}

impl PgSink {
    /// Connects, takes the writer lock (one processor per database) and brings the
    /// schema up to date.
    pub fn connect(url: &str) -> Result<PgSink> {
        let mut sink = PgSink::open(url)?;
        sink.lock_writer(url)?;
        sink.migrate()?;
        sink.prepare_staging()?;
        Ok(sink)
    }

    /// Connects to read the checkpoint only, beside the writer (the other processes of a
    /// cluster): no lock, and no writes but the schema brought up to date.
    pub fn connect_reader(url: &str) -> Result<PgSink> {
        let mut sink = PgSink::open(url)?;
        sink.migrate()?;
        Ok(sink)
    }

    fn open(url: &str) -> Result<PgSink> {
        let cannot = || format!("cannot connect to PostgreSQL at {}", redact(url));
        let mut config: postgres::Config = url.parse().with_context(cannot)?;
        // A server that vanishes without a word (a dead host, a cut network) becomes an
        // error, and so a retry, within about half a minute instead of a hang.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.keepalives_idle(Duration::from_secs(15)).keepalives_interval(Duration::from_secs(5)).keepalives_retries(3);
        config.tcp_user_timeout(Duration::from_secs(30));
        let client = config.connect(NoTls).with_context(cannot)?;
        let hook = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok());
        let (commit_delay, crash_in) = (hook(COMMIT_DELAY_VAR).map(Duration::from_millis), hook(CRASH_IN_COMMIT_VAR));
        let mut sink = PgSink { client, identities: BTreeMap::new(), commit_delay, crash_in };
        sink.client.batch_execute("SET client_min_messages TO warning")?;
        Ok(sink)
    }

    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Records `identity` with the position of `source` from now on.
    pub fn set_identity(&mut self, source: &str, identity: String) {
        self.identities.insert(source.to_owned(), identity);
    }

    fn lock_writer(&mut self, url: &str) -> Result<()> {
        let deadline = Instant::now() + WRITER_LOCK_WAIT;
        loop {
            let locked: bool = self.client.query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])?.get(0);
            if locked {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("another clickflow process is writing to the database at {}: one processor per database", redact(url));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn migrate(&mut self) -> Result<()> {
        let mut tx = self.client.transaction()?;
        // One migrator at a time, however many processors start together.
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(4242001);
             CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());",
        )?;
        for (name, sql) in MIGRATIONS {
            let done = tx.query_opt("SELECT 1 FROM schema_migrations WHERE name = $1", &[name])?.is_some();
            if !done {
                tx.batch_execute(sql).with_context(|| format!("migration {name} failed"))?;
                tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])?;
                tracing::info!(migration = name, "applied schema migration");
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn prepare_staging(&mut self) -> Result<()> {
        let mut sql = String::new();
        let tables = [
            &DEAD_LETTERS,
            &SessionRow::TABLE,
            &TrafficRow::TABLE,
            &ProductRow::TABLE,
            &FunnelRow::TABLE,
            &ConversionRow::TABLE,
            &CohortRow::TABLE,
            &RfmRow::TABLE,
            &PairRow::TABLE,
            &SimilarRow::TABLE,
            &RiskRow::TABLE,
            &ModelRow::TABLE,
        ];
        for t in tables {
            sql.push_str(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS stage_{0} ON COMMIT DELETE ROWS AS SELECT {1} FROM {0} WITH NO DATA;
                 CREATE TEMP TABLE IF NOT EXISTS unstage_{0} ON COMMIT DELETE ROWS AS SELECT {2} FROM {0} WITH NO DATA;",
                t.name,
                t.columns.join(", "),
                t.key.join(", ")
            ));
        }
        self.client.batch_execute(&sql).context("cannot create staging tables")
    }

    /// Writes one batch, the positions and totals of its sources, the watermark it
    /// reached, and `progress` if given, in one transaction.
    pub fn write(&mut self, batch: &Batch, progress: Option<&ProgressRow>) -> Result<()> {
        let mut tx = self.client.transaction()?;
        append(&mut tx, &EVENTS_RAW, &batch.events, write_event)?;
        insert_new(&mut tx, &DEAD_LETTERS, &batch.dead_letters, write_dead_letter)?;
        upsert(&mut tx, &batch.sessions)?;
        upsert(&mut tx, &batch.traffic)?;
        upsert(&mut tx, &batch.products)?;
        upsert(&mut tx, &batch.funnel)?;
        upsert(&mut tx, &batch.conversion)?;
        upsert(&mut tx, &batch.cohorts)?;
        upsert(&mut tx, &batch.rfm)?;
        upsert(&mut tx, &batch.pairs)?;
        upsert(&mut tx, &batch.similar)?;
        upsert(&mut tx, &batch.risk)?;
        upsert(&mut tx, &batch.models)?;
        record_positions(&mut tx, &batch.progress, &self.identities)?;
        if let Some(w) = batch.watermark {
            tx.execute(
                "INSERT INTO pipeline_state (watermark_ms, committed_at) VALUES ($1, now())
                 ON CONFLICT (singleton) DO UPDATE SET watermark_ms = EXCLUDED.watermark_ms, committed_at = now()",
                &[&w],
            )
            .context("update of pipeline_state failed")?;
        }
        if let Some(p) = progress {
            insert_progress(&mut tx, p)?;
        }
        if let Some(delay) = self.commit_delay {
            std::thread::sleep(delay);
        }
        if let Some(n) = self.crash_in.as_mut().filter(|_| !batch.events.is_empty() || !batch.dead_letters.is_empty()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                tracing::error!("{CRASH_IN_COMMIT_VAR}: aborting inside a commit");
                std::process::abort();
            }
        }
        tx.commit().context("commit to PostgreSQL failed")?;
        Ok(())
    }
}

/// Upserts where each source partition resumes, with its running totals.
fn record_positions(
    tx: &mut Transaction<'_>,
    sources: &BTreeMap<String, SourceProgress>,
    identities: &BTreeMap<String, String>,
) -> Result<()> {
    if sources.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&SourceProgress) -> i64| sources.values().map(f).collect::<Vec<i64>>();
    let names: Vec<&str> = sources.keys().map(String::as_str).collect();
    let identity: Vec<Option<&str>> = sources.keys().map(|k| identities.get(k).map(String::as_str)).collect();
    let max_event_time: Vec<Option<i64>> = sources.values().map(|p| p.max_event_time).collect();
    tx.execute(
        "INSERT INTO source_positions AS p (source, next_offset, lines_read, identity, max_event_time_ms, input_events, accepted_events,
             late_events, duplicate_events, dead_letters, committed_at)
         SELECT *, now() FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[],
             $8::bigint[], $9::bigint[], $10::bigint[])
         ON CONFLICT (source) DO UPDATE SET next_offset = EXCLUDED.next_offset, lines_read = EXCLUDED.lines_read,
             identity = coalesce(EXCLUDED.identity, p.identity), max_event_time_ms = EXCLUDED.max_event_time_ms,
             input_events = EXCLUDED.input_events, accepted_events = EXCLUDED.accepted_events, late_events = EXCLUDED.late_events,
             duplicate_events = EXCLUDED.duplicate_events, dead_letters = EXCLUDED.dead_letters, committed_at = now()",
        &[
            &names,
            &column(&|p| p.position.offset),
            &column(&|p| p.position.line),
            &identity,
            &max_event_time,
            &column(&|p| p.counts.input as i64),
            &column(&|p| p.counts.accepted as i64),
            &column(&|p| p.counts.late as i64),
            &column(&|p| p.counts.duplicates as i64),
            &column(&|p| p.counts.dead_letters as i64),
        ],
    )
    .context("update of source_positions failed")?;
    Ok(())
}

/// Whether `e` says PostgreSQL is unreachable or went away (a restart, a dropped
/// connection, a server shutting down), rather than that a statement is wrong.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let Some(pg) = cause.downcast_ref::<postgres::Error>() else { return false };
        let code = pg.code().map(|c| c.code());
        pg.is_closed()
            || code.is_some_and(|c| c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"))
            || std::error::Error::source(pg).is_some_and(|s| s.is::<std::io::Error>())
    })
}

/// Sends `rows` (binary COPY data) into `columns` of `table`.
fn copy(tx: &mut Transaction<'_>, table: &str, columns: &[&str], rows: CopyRows) -> Result<()> {
    use std::io::Write;
    if rows.rows() == 0 {
        return Ok(());
    }
    let mut writer = tx.copy_in(&format!("COPY {table} ({}) FROM STDIN (FORMAT binary)", columns.join(", ")))?;
    writer.write_all(&rows.finish())?;
    writer.finish().with_context(|| format!("COPY into {table} failed"))?;
    Ok(())
}

/// The COPY data of `items`, each a row of `columns` fields.
fn copy_rows<'a, T: 'a>(items: impl IntoIterator<Item = &'a T>, columns: usize, write: impl Fn(&T, &mut CopyRows)) -> CopyRows {
    let mut rows = CopyRows::default();
    for item in items {
        write(item, rows.row(columns));
    }
    rows
}

/// Appends rows straight to the table. For `events_raw`: an `(event_id, event_time)` is
/// accepted once (dedupe forgets an id only when W has passed its time plus the horizon,
/// and an event that old is late), and a restart writes only what was never committed,
/// so a key can never come twice (migration 004 says why no unique index checks it).
fn append<T>(tx: &mut Transaction<'_>, t: &Table, items: &[T], write: fn(&T, &mut CopyRows)) -> Result<()> {
    copy(tx, t.name, t.columns, copy_rows(items, t.columns.len(), write))
}

/// Inserts rows whose key is new; rows already present are left as they are (dead
/// letters: a line read again with `--from-start` keeps its first).
fn insert_new<T>(tx: &mut Transaction<'_>, t: &Table, items: &[T], write: fn(&T, &mut CopyRows)) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    copy(tx, &format!("stage_{}", t.name), t.columns, copy_rows(items, t.columns.len(), write))?;
    let columns = t.columns.join(", ");
    tx.batch_execute(&format!(
        "INSERT INTO {0} ({1}) SELECT {1} FROM stage_{0} ON CONFLICT ({2}) DO NOTHING",
        t.name,
        columns,
        t.key.join(", ")
    ))
    .with_context(|| format!("insert into {} failed", t.name))
}

/// Writes what a batch did to a table, never touching final rows: keys the database
/// did not hold are appended with COPY (the cheapest write PostgreSQL has; a key it
/// held after all would fail the write, not be lost), retracted keys are deleted, and
/// the others upserted through a staging table.
fn upsert<R: SinkRow>(tx: &mut Transaction<'_>, rows: &Upserts<R>) -> Result<()> {
    let t = &R::TABLE;
    let columns = t.columns.len();
    // A final row is never touched again; a table without finality is rewritten freely.
    let (open, open_excluded) = if t.columns.contains(&"is_final") {
        (" AND NOT t.is_final".to_owned(), format!(" WHERE NOT {}.is_final", t.name))
    } else {
        (String::new(), String::new())
    };
    let (mut inserts, mut updates, mut deletes) = (CopyRows::default(), CopyRows::default(), CopyRows::default());
    for (key, latest) in &rows.rows {
        match (&latest.row, latest.stored) {
            (Some(row), false) => row.write(inserts.row(columns)),
            (Some(row), true) => row.write(updates.row(columns)),
            (None, true) => R::write_key(key, deletes.row(t.key.len())),
            (None, false) => {}
        }
    }
    if deletes.rows() > 0 {
        copy(tx, &format!("unstage_{}", t.name), t.key, deletes)?;
        let matches: Vec<String> = t.key.iter().map(|k| format!("t.{k} = d.{k}")).collect();
        tx.batch_execute(&format!("DELETE FROM {0} t USING unstage_{0} d WHERE {1}{open}", t.name, matches.join(" AND ")))
            .with_context(|| format!("delete from {} failed", t.name))?;
    }
    if updates.rows() > 0 {
        copy(tx, &format!("stage_{}", t.name), t.columns, updates)?;
        let columns = t.columns.join(", ");
        let set: Vec<String> = t.columns.iter().filter(|c| !t.key.contains(c)).map(|c| format!("{c} = EXCLUDED.{c}")).collect();
        tx.batch_execute(&format!(
            "INSERT INTO {0} ({1}) SELECT {1} FROM stage_{0}
             ON CONFLICT ({2}) DO UPDATE SET {3}, updated_at = now(){4}",
            t.name,
            columns,
            t.key.join(", "),
            set.join(", "),
            open_excluded
        ))
        .with_context(|| format!("upsert into {} failed", t.name))?;
    }
    copy(tx, t.name, t.columns, inserts)
}

fn insert_progress(tx: &mut Transaction<'_>, p: &ProgressRow) -> Result<()> {
    tx.execute(
        "INSERT INTO pipeline_progress (reported_at, run_id, watermark, max_event_time, input_rows_per_second,
             processed_rows_per_second, open_sessions, kafka_lag, input_events, late_events, duplicate_events, dead_letters,
             run_input_events)
         VALUES (now(), $1,
             CASE WHEN $2::bigint IS NULL THEN NULL WHEN $2::bigint = 9223372036854775807 THEN 'infinity'::timestamptz
                  ELSE to_timestamp($2::bigint / 1000.0) END,
             to_timestamp($3::bigint / 1000.0), $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &p.run_id,
            &p.watermark,
            &p.max_event_time,
            &p.input_rows_per_second,
            &p.processed_rows_per_second,
            &p.open_sessions,
            &p.kafka_lag,
            &p.input_events,
            &p.late_events,
            &p.duplicate_events,
            &p.dead_letters,
            &p.run_input_events,
        ],
    )
    .context("insert into pipeline_progress failed")?;
    for src in &p.sources {
        let c = src.counts;
        tx.execute(
            "INSERT INTO source_progress (reported_at, run_id, source, watermark, max_event_time, input_events, late_events,
                 duplicate_events, dead_letters, lag)
             VALUES (now(), $1, $2,
                 CASE WHEN $3::bigint = -9223372036854775808 THEN NULL WHEN $3::bigint = 9223372036854775807 THEN 'infinity'::timestamptz
                      ELSE to_timestamp($3::bigint / 1000.0) END,
                 to_timestamp($4::bigint / 1000.0), $5, $6, $7, $8, $9)",
            &[
                &p.run_id,
                &src.source,
                &src.watermark,
                &src.max_event_time,
                &(c.input as i64),
                &(c.late as i64),
                &(c.duplicates as i64),
                &(c.dead_letters as i64),
                &src.lag,
            ],
        )
        .context("insert into source_progress failed")?;
    }
    Ok(())
}

/// The URL without its password, for error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
