//! The PostgreSQL sink: schema migrations, and one transaction per [`Batch`] made of
//! COPY into staging tables then set-based upserts and deletes.
//!
//! Owns the connection and every SQL statement the processor runs. Rows already final
//! in the database are never changed (`WHERE NOT is_final`), and events and dead letters
//! are written once per key, so replaying an input changes nothing.

use anyhow::{Context, Result};
use dataflows::rows::{ConversionRow, FunnelRow, ProductRow, SessionRow, TrafficRow};
use postgres::{Client, NoTls, Transaction};

use super::batch::{Batch, Upserts};
use super::tables::{write_dead_letter, write_event, CopyLine, SinkRow, Table, DEAD_LETTERS, EVENTS_RAW};

/// The migrations in `sql/`, applied in order, each once.
const MIGRATIONS: &[(&str, &str)] = &[
    ("001_tables.sql", include_str!("../../sql/001_tables.sql")),
    ("002_source_progress_and_reader.sql", include_str!("../../sql/002_source_progress_and_reader.sql")),
];

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
    pub sources: Vec<dataflows::rows::SourceProgress>,
}

pub struct PgSink {
    client: Client,
}

impl PgSink {
    /// Connects and brings the schema up to date.
    pub fn connect(url: &str) -> Result<PgSink> {
        let client = Client::connect(url, NoTls).with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
        let mut sink = PgSink { client };
        sink.migrate()?;
        sink.prepare_staging()?;
        Ok(sink)
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
        let tables = [&EVENTS_RAW, &DEAD_LETTERS, &SessionRow::TABLE, &TrafficRow::TABLE, &ProductRow::TABLE, &FunnelRow::TABLE, &ConversionRow::TABLE];
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

    /// Writes one batch, and `progress` if given, in one transaction.
    pub fn write(&mut self, batch: &Batch, progress: Option<&ProgressRow>) -> Result<()> {
        let mut tx = self.client.transaction()?;
        insert_new(&mut tx, &EVENTS_RAW, &batch.events, write_event)?;
        insert_new(&mut tx, &DEAD_LETTERS, &batch.dead_letters, write_dead_letter)?;
        upsert(&mut tx, &batch.sessions)?;
        upsert(&mut tx, &batch.traffic)?;
        upsert(&mut tx, &batch.products)?;
        upsert(&mut tx, &batch.funnel)?;
        upsert(&mut tx, &batch.conversion)?;
        if let Some(p) = progress {
            insert_progress(&mut tx, p)?;
        }
        tx.commit().context("commit to PostgreSQL failed")?;
        Ok(())
    }
}

fn copy(tx: &mut Transaction<'_>, table: &str, columns: &[&str], data: &str) -> Result<()> {
    use std::io::Write;
    let mut writer = tx.copy_in(&format!("COPY {table} ({}) FROM STDIN", columns.join(", ")))?;
    writer.write_all(data.as_bytes())?;
    writer.finish().with_context(|| format!("COPY into {table} failed"))?;
    Ok(())
}

/// Inserts rows whose key is new; rows already present are left as they are.
fn insert_new<T>(tx: &mut Transaction<'_>, t: &Table, items: &[T], write: fn(&T, &mut CopyLine)) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let (mut line, mut data) = (CopyLine::default(), String::new());
    for item in items {
        write(item, &mut line);
        line.finish_into(&mut data);
    }
    copy(tx, &format!("stage_{}", t.name), t.columns, &data)?;
    let columns = t.columns.join(", ");
    tx.batch_execute(&format!(
        "INSERT INTO {0} ({1}) SELECT {1} FROM stage_{0} ON CONFLICT ({2}) DO NOTHING",
        t.name,
        columns,
        t.key.join(", ")
    ))
    .with_context(|| format!("insert into {} failed", t.name))
}

/// Deletes retracted keys and upserts new versions, never touching final rows.
fn upsert<R: SinkRow>(tx: &mut Transaction<'_>, rows: &Upserts<R>) -> Result<()> {
    let t = &R::TABLE;
    let mut line = CopyLine::default();
    let (mut upserts, mut deletes) = (String::new(), String::new());
    for (key, row) in &rows.rows {
        match row {
            Some(row) => {
                row.write(&mut line);
                line.finish_into(&mut upserts);
            }
            None => {
                R::write_key(key, &mut line);
                line.finish_into(&mut deletes);
            }
        }
    }
    if !deletes.is_empty() {
        copy(tx, &format!("unstage_{}", t.name), t.key, &deletes)?;
        let matches: Vec<String> = t.key.iter().map(|k| format!("t.{k} = d.{k}")).collect();
        tx.batch_execute(&format!("DELETE FROM {0} t USING unstage_{0} d WHERE {1} AND NOT t.is_final", t.name, matches.join(" AND ")))
            .with_context(|| format!("delete from {} failed", t.name))?;
    }
    if !upserts.is_empty() {
        copy(tx, &format!("stage_{}", t.name), t.columns, &upserts)?;
        let columns = t.columns.join(", ");
        let updates: Vec<String> =
            t.columns.iter().filter(|c| !t.key.contains(c)).map(|c| format!("{c} = EXCLUDED.{c}")).collect();
        tx.batch_execute(&format!(
            "INSERT INTO {0} ({1}) SELECT {1} FROM stage_{0}
             ON CONFLICT ({2}) DO UPDATE SET {3}, updated_at = now() WHERE NOT {0}.is_final",
            t.name,
            columns,
            t.key.join(", "),
            updates.join(", ")
        ))
        .with_context(|| format!("upsert into {} failed", t.name))?;
    }
    Ok(())
}

fn insert_progress(tx: &mut Transaction<'_>, p: &ProgressRow) -> Result<()> {
    tx.execute(
        "INSERT INTO pipeline_progress (reported_at, run_id, watermark, max_event_time, input_rows_per_second,
             processed_rows_per_second, open_sessions, kafka_lag, input_events, late_events, duplicate_events, dead_letters)
         VALUES (now(), $1,
             CASE WHEN $2::bigint IS NULL THEN NULL WHEN $2::bigint = 9223372036854775807 THEN 'infinity'::timestamptz
                  ELSE to_timestamp($2::bigint / 1000.0) END,
             to_timestamp($3::bigint / 1000.0), $4, $5, $6, $7, $8, $9, $10, $11)",
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
            &[&p.run_id, &src.source, &src.watermark, &src.max_event_time, &(c.input as i64), &(c.late as i64), &(c.duplicates as i64), &(c.dead_letters as i64), &src.lag],
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
