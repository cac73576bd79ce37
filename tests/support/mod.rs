//! Shared by the integration tests: a fresh PostgreSQL database per test, running the
//! `clickflow` binary as a user would, and reading the tables back as comparable lines.
//!
//! Needs `DATABASE_URL` pointing at a server where it may create databases
//! (`./start_infrastructure.sh` prints one). Without it the tests fail, never skip.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::Duration;

use dataflows::event::EventType;
use dataflows::risk::score::Model;
use dataflows::rows::SessionRow;
use postgres::{Client, NoTls};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;
use reference::Tables;

pub const BIN: &str = env!("CARGO_BIN_EXE_clickflow");

/// A database that lives as long as the value.
pub struct TestDb {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TestDb {
    pub fn new(label: &str) -> TestDb {
        static N: AtomicUsize = AtomicUsize::new(0);
        let admin_url = std::env::var("DATABASE_URL")
            .expect("DATABASE_URL must name a PostgreSQL server for the integration tests: run ./start_infrastructure.sh");
        let name = format!("cf_{label}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let mut admin = Client::connect(&admin_url, NoTls).expect("connect with DATABASE_URL");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).expect("drop an old test database");
        admin.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a test database");
        let url = with_database(&admin_url, &name);
        TestDb { admin_url, name, url }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&self.admin_url, NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A scratch directory under the target folder, emptied first. Labels are unique among
/// the tests, so the next run reuses (and empties) the same directory.
pub fn scratch(label: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(label);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs `clickflow ARGS`, asserting exit 0; returns stdout.
pub fn clickflow(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).env("RUST_LOG", "warn").output().expect("run clickflow");
    assert!(out.status.success(), "clickflow {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Every table as sorted `|`-separated lines of its contract columns (base figures, not
/// derived ones; see [`derived_column_breaches`]), times as epoch milliseconds.
pub fn actual_tables(client: &mut Client) -> BTreeMap<&'static str, Vec<String>> {
    let ms = |c: &str| format!("(extract(epoch from {c}) * 1000)::bigint");
    let queries: [(&str, String); 12] = [
        ("events_raw", format!(
            "SELECT concat_ws('|', event_id, {}, event_type, user_id, page, coalesce(product_id, '-'), coalesce(category, '-'),
                    coalesce(price::text, '-'), coalesce(quantity::text, '-'), coalesce(order_id, '-'), device, country, referrer, user_agent, ip)
             FROM events_raw", ms("event_time"))),
        ("sessions", format!(
            "SELECT concat_ws('|', user_id, {}, {}, round(duration_seconds * 1000)::bigint, event_count, page_views, product_views, searches,
                    cart_adds, cart_removes, checkouts, purchases, units, revenue, converted, bounced, cart_abandoned, landing_page, exit_page,
                    device, country, referrer, funnel_step, is_final)
             FROM sessions", ms("session_start"), ms("session_end"))),
        ("traffic", format!(
            "SELECT concat_ws('|', {}, {}, events, page_views, product_views, searches, cart_adds, cart_removes, checkouts, purchases,
                    active_users, revenue, is_final)
             FROM traffic", ms("window_start"), ms("window_end"))),
        ("product_stats", format!(
            "SELECT concat_ws('|', {}, product_id, {}, category, views, cart_adds, cart_removes, purchases, units, revenue, is_final)
             FROM product_stats", ms("window_start"), ms("window_end"))),
        ("funnel", format!(
            "SELECT concat_ws('|', {}, {}, sessions, product_view_sessions, cart_sessions, checkout_sessions, purchase_sessions, revenue, is_final)
             FROM funnel", ms("window_start"), ms("window_end"))),
        ("conversion", format!(
            "SELECT concat_ws('|', {}, dimension, value, {}, sessions, converted_sessions, revenue, is_final)
             FROM conversion", ms("window_start"), ms("window_end"))),
        ("cohort_retention", format!(
            "SELECT concat_ws('|', {}, day_offset, cohort_users, active_users, revenue, is_final)
             FROM cohort_retention", ms("cohort_date::timestamp AT TIME ZONE 'UTC'"))),
        ("customer_rfm", format!(
            "SELECT concat_ws('|', user_id, {}, {}, recency_days, frequency, monetary, r_score, f_score, m_score, segment)
             FROM customer_rfm", ms("as_of"), ms("last_purchase_at"))),
        ("product_pairs", "SELECT concat_ws('|', product_id, other_product_id, orders_together, confidence, lift) FROM product_pairs".to_owned()),
        ("product_similar", "SELECT concat_ws('|', product_id, other_product_id, sessions_together, similarity) FROM product_similar".to_owned()),
        ("session_risk", format!(
            "SELECT concat_ws('|', user_id, {}, {}, score, array_to_string(reasons, ','), model_version, {})
             FROM session_risk", ms("session_start"), ms("session_end"), ms("scored_at"))),
        ("risk_models", format!(
            "SELECT concat_ws('|', model_version, {}, sessions, coalesce(jsonb_array_length(model->'forest'->'trees'), 0))
             FROM risk_models", ms("valid_from"))),
    ];
    queries
        .into_iter()
        .map(|(table, sql)| {
            let mut lines: Vec<String> = client.query(&sql, &[]).expect(table).iter().map(|r| r.get(0)).collect();
            lines.sort();
            (table, lines)
        })
        .collect()
}

fn money(cents: i64) -> String {
    format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
}

fn flag(b: bool) -> &'static str {
    if b {
        "t"
    } else {
        "f"
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or("-".to_owned(), T::to_string)
}

/// The reference's tables in the same form as [`actual_tables`].
pub fn expected_tables(t: &Tables) -> BTreeMap<&'static str, Vec<String>> {
    let count = |c: &[i64; 7], e: EventType| c[e.index()];
    let types = |c: &[i64; 7]| EventType::ALL.map(|e| count(c, e).to_string()).join("|");
    let session = |s: &SessionRow| {
        let events: i64 = s.counts.iter().sum();
        let purchases = count(&s.counts, EventType::Purchase);
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            s.user_id,
            s.session_start,
            s.session_end,
            s.session_end - s.session_start,
            events,
            types(&s.counts),
            s.units,
            money(s.revenue_cents),
            flag(purchases > 0),
            flag(events == 1),
            flag(count(&s.counts, EventType::AddToCart) > 0 && purchases == 0),
            s.landing_page,
            s.exit_page,
            s.device,
            s.country,
            s.referrer,
            s.funnel_step,
            flag(s.is_final)
        )
    };
    let mut out: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    out.insert(
        "events_raw",
        t.events
            .values()
            .map(|e| {
                format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                    e.event_id,
                    e.event_time,
                    e.event_type.as_str(),
                    e.user_id,
                    e.page,
                    opt(&e.product_id),
                    opt(&e.category),
                    e.price_cents.map_or("-".to_owned(), money),
                    opt(&e.quantity),
                    opt(&e.order_id),
                    e.device,
                    e.country,
                    e.referrer,
                    e.user_agent,
                    e.ip
                )
            })
            .collect(),
    );
    out.insert("sessions", t.sessions.values().map(session).collect());
    out.insert(
        "traffic",
        t.traffic
            .values()
            .map(|r| {
                let events: i64 = r.counts.iter().sum();
                format!(
                    "{}|{}|{}|{}|{}|{}|{}",
                    r.window_start,
                    r.window_end,
                    events,
                    types(&r.counts),
                    r.active_users,
                    money(r.revenue_cents),
                    flag(r.is_final)
                )
            })
            .collect(),
    );
    out.insert(
        "product_stats",
        t.products
            .values()
            .map(|r| {
                format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                    r.window_start,
                    r.product_id,
                    r.window_end,
                    r.category,
                    r.views,
                    r.cart_adds,
                    r.cart_removes,
                    r.purchases,
                    r.units,
                    money(r.revenue_cents),
                    flag(r.is_final)
                )
            })
            .collect(),
    );
    out.insert(
        "funnel",
        t.funnel
            .values()
            .map(|r| {
                format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}|{}",
                    r.window_start,
                    r.window_end,
                    r.sessions,
                    r.product_view_sessions,
                    r.cart_sessions,
                    r.checkout_sessions,
                    r.purchase_sessions,
                    money(r.revenue_cents),
                    flag(r.is_final)
                )
            })
            .collect(),
    );
    out.insert(
        "conversion",
        t.conversion
            .values()
            .map(|r| {
                format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}",
                    r.window_start,
                    r.dimension,
                    r.value,
                    r.window_end,
                    r.sessions,
                    r.converted_sessions,
                    money(r.revenue_cents),
                    flag(r.is_final)
                )
            })
            .collect(),
    );
    out.insert(
        "cohort_retention",
        t.cohorts
            .values()
            .map(|r| {
                format!(
                    "{}|{}|{}|{}|{}|{}",
                    r.cohort_date,
                    r.day_offset,
                    r.cohort_users,
                    r.active_users,
                    money(r.revenue_cents),
                    flag(r.is_final)
                )
            })
            .collect(),
    );
    out.insert(
        "customer_rfm",
        t.rfm
            .values()
            .map(|r| {
                format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                    r.user_id,
                    r.as_of,
                    r.last_purchase_at,
                    r.recency_days,
                    r.frequency,
                    money(r.monetary_cents),
                    r.r_score,
                    r.f_score,
                    r.m_score,
                    r.segment
                )
            })
            .collect(),
    );
    out.insert(
        "product_pairs",
        t.pairs
            .values()
            .map(|r| {
                let confidence = r.orders_together as f64 / r.product_orders as f64;
                let lift = (r.orders_together * r.all_orders) as f64 / (r.product_orders * r.other_orders) as f64;
                format!("{}|{}|{}|{confidence}|{lift}", r.product_id, r.other_product_id, r.orders_together)
            })
            .collect(),
    );
    out.insert(
        "product_similar",
        t.similar
            .values()
            .map(|r| {
                let similarity = r.sessions_together as f64 / (r.product_sessions as f64 * r.other_sessions as f64).sqrt();
                format!("{}|{}|{}|{similarity}", r.product_id, r.other_product_id, r.sessions_together)
            })
            .collect(),
    );
    out.insert(
        "session_risk",
        t.risk
            .values()
            .map(|r| {
                let reasons: Vec<&str> = r.reasons.iter().map(|t| t.as_str()).collect();
                let (user, start, end) = (&r.user_id, r.session_start, r.session_end);
                format!("{user}|{start}|{end}|{}|{}|{}|{}", r.score, reasons.join(","), r.model_version, r.scored_at)
            })
            .collect(),
    );
    out.insert(
        "risk_models",
        t.models
            .values()
            .map(|m| {
                let model: Model = serde_json::from_str(&m.model).expect("a model reads");
                let trees = model.forest.map_or(0, |f| f.trees());
                format!("{}|{}|{}|{trees}", m.model_version, m.valid_from, m.sessions)
            })
            .collect(),
    );
    for lines in out.values_mut() {
        lines.sort();
    }
    out
}

/// Rows whose derived columns (rates, averages) disagree with their own base columns or
/// with the sessions they summarise; each entry names the check.
pub fn derived_column_breaches(client: &mut Client) -> Vec<String> {
    let checks = [
        (
            "product_stats view_to_cart_rate",
            "SELECT count(*) FROM product_stats WHERE view_to_cart_rate IS DISTINCT FROM cart_adds::float8 / nullif(views, 0)",
        ),
        (
            "product_stats cart_to_purchase_rate",
            "SELECT count(*) FROM product_stats WHERE cart_to_purchase_rate IS DISTINCT FROM purchases::float8 / nullif(cart_adds, 0)",
        ),
        ("funnel conversion_rate", "SELECT count(*) FROM funnel WHERE abs(conversion_rate - purchase_sessions::float8 / sessions) > 1e-12"),
        (
            "conversion conversion_rate",
            "SELECT count(*) FROM conversion WHERE abs(conversion_rate - converted_sessions::float8 / sessions) > 1e-12",
        ),
        (
            "cohort_retention retention",
            "SELECT count(*) FROM cohort_retention WHERE abs(retention - active_users::float8 / cohort_users) > 1e-12",
        ),
        (
            "funnel vs sessions",
            "SELECT count(*) FROM funnel f LEFT JOIN LATERAL (
            SELECT count(*) n, avg(bounced::int) bounce, avg(duration_seconds) avg_s,
                   sum(cart_abandoned::int)::float8 / nullif(sum((cart_adds > 0)::int), 0) abandon
            FROM sessions s WHERE s.session_start >= f.window_start AND s.session_start < f.window_end) x ON true
            WHERE x.n <> f.sessions OR abs(x.bounce - f.bounce_rate) > 1e-9 OR abs(x.avg_s - f.avg_session_seconds) > 1e-6
               OR (x.abandon IS NULL) <> (f.cart_abandonment_rate IS NULL) OR abs(x.abandon - f.cart_abandonment_rate) > 1e-9",
        ),
    ];
    let mut breaches = Vec::new();
    for (name, sql) in checks {
        let n: i64 = client.query_one(sql, &[]).expect(name).get(0);
        if n > 0 {
            breaches.push(format!("{name}: {n} rows"));
        }
    }
    breaches
}

/// Asserts two table dumps are equal, showing the first differing lines per table.
pub fn assert_tables_eq(actual: &BTreeMap<&'static str, Vec<String>>, expected: &BTreeMap<&'static str, Vec<String>>) {
    let mut report = String::new();
    for (table, want) in expected {
        let got = &actual[table];
        if got != want {
            let (got_set, want_set): (BTreeSet<_>, BTreeSet<_>) = (got.iter().collect(), want.iter().collect());
            let missing: Vec<_> = want_set.difference(&got_set).take(3).collect();
            let extra: Vec<_> = got_set.difference(&want_set).take(3).collect();
            report.push_str(&format!(
                "\n{table}: {} rows, expected {}\n  missing: {missing:#?}\n  unexpected: {extra:#?}",
                got.len(),
                want.len()
            ));
        }
    }
    assert!(report.is_empty(), "tables differ from the reference:{report}");
}

/// Dead letters as (line number, reason), from `source` = `file:PATH:LINE`.
pub fn dead_letters(client: &mut Client) -> BTreeMap<usize, String> {
    client
        .query("SELECT source, reason FROM dead_letters", &[])
        .expect("dead_letters")
        .iter()
        .map(|r| {
            let source: String = r.get(0);
            let line = source.rsplit(':').next().and_then(|n| n.parse().ok()).expect("source ends in a line number");
            (line, r.get(1))
        })
        .collect()
}

/// Starts `clickflow ARGS` in the background with `env` set, its stderr in a file of
/// `dir` named after `label` (read it with [`stderr_of`]).
pub fn spawn_clickflow(args: &[&str], env: &[(&str, String)], dir: &Path, label: &str) -> std::process::Child {
    let log = std::fs::File::create(dir.join(format!("{label}.stderr"))).expect("create a log file");
    let mut command = Command::new(BIN);
    command.args(args).env("RUST_LOG", "info").stdout(std::process::Stdio::null()).stderr(log);
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("start clickflow")
}

pub fn stderr_of(dir: &Path, label: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{label}.stderr"))).unwrap_or_default()
}

/// A PostgreSQL server of the test's own, on a free port, that the test may stop and
/// start (the shared server of `DATABASE_URL` serves other tests at the same time).
/// Its binaries are found as `start_infrastructure.sh` finds them; as root, it runs as
/// the `postgres` user.
pub struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl PgServer {
    pub fn start(label: &str) -> PgServer {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .map(|d| d.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .expect("PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)");
        let dir = std::env::temp_dir().join(format!("cf-pg-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("server dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = PgServer { dir, bin, port };
        if is_root() {
            assert!(Command::new("chown").args(["postgres", server.dir.to_str().unwrap()]).status().unwrap().success());
        }
        server.as_postgres(&format!(
            "'{}/initdb' -D '{}/data' -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null",
            server.bin.display(),
            server.dir.display()
        ));
        server.up();
        server
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn up(&self) {
        self.as_postgres(&format!(
            "'{0}/pg_ctl' -D '{1}/data' -l '{1}/log' -w -o \"-p {2} -k '{1}' -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null",
            self.bin.display(),
            self.dir.display(),
            self.port
        ));
    }

    /// Stops the server (`fast`: active connections are terminated, as in a restart).
    pub fn down(&self) {
        self.as_postgres(&format!("'{}/pg_ctl' -D '{}/data' -m fast -w stop >/dev/null", self.bin.display(), self.dir.display()));
    }

    fn as_postgres(&self, script: &str) {
        let status = if is_root() {
            Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", script]).status()
        } else {
            Command::new("sh").args(["-c", script]).status()
        };
        assert!(status.expect("run a PostgreSQL command").success(), "{script} failed (log in {})", self.dir.display());
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let script = format!("'{}/pg_ctl' -D '{}/data' -m immediate stop >/dev/null 2>&1", self.bin.display(), self.dir.display());
        let _ = if is_root() {
            Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", &script]).status()
        } else {
            Command::new("sh").args(["-c", &script]).status()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The lines of a JSON Lines file, without empty ones.
pub fn read_lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).expect("read the data file");
    bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

/// A valid page_view as the contract's JSON.
pub fn page_view(id: &str, time: i64, user: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","event_time":"{}","event_type":"page_view","user_id":"{user}","page":"/","device":"mobile","country":"FR","referrer":"direct","user_agent":"t","ip":"10.1.2.3"}}"#,
        dataflows::time::format_rfc3339(time)
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `(input_events, duplicate_events, dead_letters, late_events, run_input_events)` of the
/// newest progress report.
pub fn last_progress(client: &mut Client) -> (i64, i64, i64, i64, i64) {
    let r = client
        .query_one(
            "SELECT input_events, duplicate_events, dead_letters, late_events, run_input_events FROM pipeline_progress ORDER BY id DESC LIMIT 1",
            &[],
        )
        .expect("a progress report");
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// A Kafka-protocol broker in this process (librdkafka's mock cluster) with `topic` of
/// `partitions` partitions; it serves while the value lives.
pub fn mock_broker(topic: &str, partitions: i32) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("start a mock Kafka cluster");
    cluster.create_topic(topic, partitions, 1).expect("create topic");
    cluster
}

/// Sends `(partition, payload)` records to `topic` and waits until all are delivered.
pub fn send<P: AsRef<[u8]>>(brokers: &str, topic: &str, records: &[(i32, P)]) {
    let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for (partition, payload) in records {
        producer.send(BaseRecord::<(), [u8]>::to(topic).partition(*partition).payload(payload.as_ref())).expect("enqueue");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("delivered");
}
