//! `clickflow monitor`: a terminal view of the pipeline's health, read from PostgreSQL
//! (`pipeline_progress`, `source_progress`, `dead_letters`), refreshed until stopped;
//! `--once` prints it once and exits non-zero when the pipeline is unhealthy.
//!
//! Owns the health rules; it only reads.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use postgres::{Client, NoTls};

use crate::sink::postgres::redact;

/// Thresholds of the health verdict.
pub struct Rules {
    /// A running pipeline reports every few seconds: older than this, it is stalled.
    pub max_report_age: Duration,
    /// How far the watermark may trail the wall clock in a live run.
    pub max_watermark_delay: Duration,
    /// Consumer lag, messages, summed over partitions.
    pub max_lag: i64,
    /// Dead letters as a share of input.
    pub max_dead_letter_ratio: f64,
}

/// What the view shows, read in one go.
struct Snapshot {
    run_id: String,
    report_age_s: f64,
    /// `None` before the first event; `+∞` once a bounded input ended.
    watermark: Option<String>,
    watermark_delay_s: Option<f64>,
    finished: bool,
    input_rate: f64,
    processed_rate: f64,
    open_sessions: i64,
    lag: Option<i64>,
    input: i64,
    late: i64,
    duplicates: i64,
    dead_letters: i64,
    by_reason: Vec<(String, i64)>,
    partitions: Vec<(String, Option<i64>, Option<String>, i64)>,
    /// Sessions in `session_risk`, the latest one's `scored_at`, the latest model version.
    risk: (i64, Option<String>, Option<String>),
}

/// The verdict and the rules it broke.
pub struct Health {
    pub healthy: bool,
    pub problems: Vec<String>,
}

pub fn run(url: &str, rules: &Rules, once: bool, interval: Duration) -> Result<bool> {
    let mut client = Client::connect(url, NoTls).with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
    let stop = crate::signals::stop_flag()?;
    loop {
        let read = snapshot(&mut client)
            .context("cannot read pipeline_progress, source_progress and dead_letters (has `clickflow process` run on this database?)")?;
        let (text, health) = match read {
            Some(s) => {
                let health = judge(&s, rules);
                (render(&s, &health), health)
            }
            None => {
                let health = Health { healthy: false, problems: vec!["no progress reported yet: is `clickflow process` running?".into()] };
                (format!("health: UNHEALTHY\n  - {}\n", health.problems[0]), health)
            }
        };
        if once {
            print!("{text}");
            return Ok(health.healthy);
        }
        // Clear the screen and draw again.
        print!("\x1b[2J\x1b[H{text}");
        let mut slept = Duration::ZERO;
        while slept < interval {
            if stop.load(Ordering::Relaxed) {
                return Ok(health.healthy);
            }
            std::thread::sleep(Duration::from_millis(100));
            slept += Duration::from_millis(100);
        }
    }
}

fn snapshot(client: &mut Client) -> Result<Option<Snapshot>> {
    let Some(p) = client.query_opt(
        "SELECT run_id, extract(epoch FROM now() - reported_at)::float8, watermark::text,
                CASE WHEN watermark = 'infinity' THEN NULL ELSE extract(epoch FROM now() - watermark)::float8 END,
                watermark = 'infinity', input_rows_per_second, processed_rows_per_second, open_sessions, kafka_lag,
                input_events, late_events, duplicate_events, dead_letters, reported_at
         FROM pipeline_progress ORDER BY id DESC LIMIT 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    let run_id: String = p.get(0);
    let reported_at: std::time::SystemTime = p.get(13);
    let by_reason = client
        .query("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY count(*) DESC, reason", &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let partitions = client
        .query(
            "SELECT source, lag, watermark::text, input_events FROM source_progress
             WHERE run_id = $1 AND reported_at = $2 ORDER BY source",
            &[&run_id, &reported_at],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let r = client.query_one(
        "SELECT (SELECT count(*) FROM session_risk), (SELECT max(scored_at)::text FROM session_risk),
                (SELECT model_version FROM risk_models ORDER BY valid_from DESC LIMIT 1)",
        &[],
    )?;
    Ok(Some(Snapshot {
        run_id,
        report_age_s: p.get(1),
        watermark: p.get(2),
        watermark_delay_s: p.get(3),
        finished: p.get::<_, Option<bool>>(4).unwrap_or(false),
        input_rate: p.get(5),
        processed_rate: p.get(6),
        open_sessions: p.get(7),
        lag: p.get(8),
        input: p.get(9),
        late: p.get(10),
        duplicates: p.get(11),
        dead_letters: p.get(12),
        by_reason,
        partitions,
        risk: (r.get(0), r.get(1), r.get(2)),
    }))
}

/// The health rules, in order: a finished bounded run is healthy if its dead letters are
/// within bounds; a running one must also report recently, keep its watermark near the
/// wall clock and its consumer lag low.
fn judge(s: &Snapshot, rules: &Rules) -> Health {
    let mut problems = Vec::new();
    if !s.finished {
        if s.report_age_s > rules.max_report_age.as_secs_f64() {
            problems.push(format!(
                "last progress report is {:.0} s old (limit {} s): the processor is stalled or stopped",
                s.report_age_s,
                rules.max_report_age.as_secs()
            ));
        }
        if let Some(delay) = s.watermark_delay_s {
            if delay > rules.max_watermark_delay.as_secs_f64() {
                problems.push(format!("watermark is {delay:.0} s behind the wall clock (limit {} s)", rules.max_watermark_delay.as_secs()));
            }
        }
        if let Some(lag) = s.lag.filter(|l| *l > rules.max_lag) {
            problems.push(format!("consumer lag is {lag} messages (limit {})", rules.max_lag));
        }
    }
    if s.input > 0 {
        let ratio = s.dead_letters as f64 / s.input as f64;
        if ratio > rules.max_dead_letter_ratio {
            problems.push(format!("{:.2} % of input is dead-lettered (limit {:.2} %)", ratio * 100.0, rules.max_dead_letter_ratio * 100.0));
        }
    }
    Health { healthy: problems.is_empty(), problems }
}

fn render(s: &Snapshot, h: &Health) -> String {
    let mut out = String::new();
    let verdict = match (h.healthy, s.finished) {
        (true, true) => "HEALTHY (input ended, every row final)",
        (true, false) => "HEALTHY",
        (false, _) => "UNHEALTHY",
    };
    let _ = writeln!(out, "clickflow monitor — run {}", s.run_id);
    let _ = writeln!(out, "health: {verdict}");
    for p in &h.problems {
        let _ = writeln!(out, "  - {p}");
    }
    let delay = s.watermark_delay_s.map_or(String::new(), |d| format!(" ({d:.1} s behind wall clock)"));
    let _ = writeln!(out, "last report: {:.1} s ago   watermark: {}{delay}", s.report_age_s, s.watermark.as_deref().unwrap_or("none yet"));
    let _ = writeln!(
        out,
        "input: {:.0} rows/s   processed: {:.0} rows/s   open sessions: {}   consumer lag: {}",
        s.input_rate,
        s.processed_rate,
        s.open_sessions,
        s.lag.map_or("-".into(), |l| l.to_string())
    );
    let share = if s.input > 0 { 100.0 * s.dead_letters as f64 / s.input as f64 } else { 0.0 };
    let _ = writeln!(
        out,
        "totals: input {}   late {}   duplicates {}   dead letters {} ({share:.2} %)",
        s.input, s.late, s.duplicates, s.dead_letters
    );
    if !s.by_reason.is_empty() {
        let reasons: Vec<String> = s.by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(out, "dead letters by reason: {}", reasons.join(", "));
    }
    let (flagged, latest, model) = &s.risk;
    let latest = latest.as_deref().map_or(String::new(), |t| format!(" (latest became final {t})"));
    let _ = writeln!(out, "risk: {flagged} sessions flagged{latest}   model version: {}", model.as_deref().unwrap_or("none yet"));
    if !s.partitions.is_empty() {
        let _ = writeln!(out, "{:<28} {:>10} {:>12}  watermark", "partition", "lag", "input");
        for (source, lag, watermark, input) in &s.partitions {
            let lag = lag.map_or("-".into(), |l| l.to_string());
            let _ = writeln!(out, "{source:<28} {lag:>10} {input:>12}  {}", watermark.as_deref().unwrap_or("-"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            run_id: "r".into(),
            report_age_s: 2.0,
            watermark: Some("2026-11-21 10:00:00+00".into()),
            watermark_delay_s: Some(65.0),
            finished: false,
            input_rate: 100.0,
            processed_rate: 100.0,
            open_sessions: 3,
            lag: Some(10),
            input: 1000,
            late: 1,
            duplicates: 2,
            dead_letters: 3,
            by_reason: vec![("late".into(), 1)],
            partitions: vec![],
            risk: (0, None, None),
        }
    }

    fn rules() -> Rules {
        Rules {
            max_report_age: Duration::from_secs(30),
            max_watermark_delay: Duration::from_secs(300),
            max_lag: 100_000,
            max_dead_letter_ratio: 0.05,
        }
    }

    #[test]
    fn each_rule_can_fail_alone() {
        assert!(judge(&snapshot(), &rules()).healthy);
        let stale = Snapshot { report_age_s: 31.0, ..snapshot() };
        assert!(judge(&stale, &rules()).problems[0].contains("stalled"));
        let behind = Snapshot { watermark_delay_s: Some(301.0), ..snapshot() };
        assert!(judge(&behind, &rules()).problems[0].contains("behind the wall clock"));
        let lagging = Snapshot { lag: Some(100_001), ..snapshot() };
        assert!(judge(&lagging, &rules()).problems[0].contains("lag"));
        let dirty = Snapshot { dead_letters: 51, ..snapshot() };
        assert!(judge(&dirty, &rules()).problems[0].contains("dead-lettered"));
    }

    #[test]
    fn a_finished_run_is_not_stale() {
        let done = Snapshot { report_age_s: 3600.0, watermark_delay_s: None, finished: true, ..snapshot() };
        assert!(judge(&done, &rules()).healthy);
    }
}
