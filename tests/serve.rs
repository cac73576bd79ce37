//! `clickflow serve` as a client sees it: a real server on a real database filled by the
//! processor, every route, bad input, unknown ids, a database that is gone or silent,
//! and concurrent clients.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// A running `clickflow serve`, stopped on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(postgres: &str, extra: &[&str], label: &str) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let dir = scratch(label);
        let args = [&["serve", "--postgres", postgres, "--addr", &addr][..], extra].concat();
        let child = spawn_clickflow(&args, &[], &dir, "serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen: {}", stderr_of(&dir, "serve"));
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, addr }
    }

    /// `GET path`: the status and the body. A client timeout of 20 s stands for a hang.
    fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, "")
    }

    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap_or_else(|e| panic!("{method} {path}: no answer ({e})"));
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{method} {path}: {text:?}"));
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
        (status, body)
    }

    /// `POST path` with a JSON body: the status and the JSON answer.
    fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let (status, text) = self.request("POST", path, body);
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}")))
    }

    fn json(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.get(path);
        (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A database holding two processed days of shoppers and a few bots, so that every
/// table has rows; and the events file.
fn filled(label: &str) -> (TestDb, std::path::PathBuf) {
    let dir = scratch(label);
    let path = dir.join("events.jsonl");
    let file = path.to_str().unwrap();
    clickflow(&["produce", "--days", "2", "--events-per-second", "0.2", "--bots", "0.02", "--seed", "6", "--out", file]);
    let db = TestDb::new(label);
    clickflow(&["process", "--input", file, "--postgres", &db.url, "--quiet"]);
    (db, path)
}

/// `{"events": [...]}` of the session of `user` from `start` to `end`, from the file.
fn session_body(file: &std::path::Path, user: &str, start: i64, end: i64) -> String {
    let events: Vec<Value> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| {
            let time = dataflows::time::parse_rfc3339(e["event_time"].as_str().unwrap()).unwrap();
            e["user_id"] == user && (start..=end).contains(&time)
        })
        .collect();
    serde_json::json!({ "events": events }).to_string()
}

#[test]
fn every_route_answers_from_the_tables() {
    let (db, _) = filled("serve_routes");
    let server = Server::start(&db.url, &[], "serve-routes");
    let mut client = db.client();

    let (status, health) = server.json("/health");
    assert_eq!((status, &health["status"], &health["database"]), (200, &"ok".into(), &"reachable".into()), "{health}");
    assert_eq!(health["watermark"], "infinity", "a bounded replay ends with W at +infinity");
    assert!(health["latest_progress_age_seconds"].as_f64().is_some(), "{health}");

    // A buyer: their customer_rfm row, and their sessions newest first.
    let row =
        client.query_one("SELECT user_id, segment, frequency FROM customer_rfm ORDER BY frequency DESC, user_id LIMIT 1", &[]).unwrap();
    let (user, segment, frequency): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
    let sessions: i64 = client.query_one("SELECT count(*) FROM sessions WHERE user_id = $1", &[&user]).unwrap().get(0);
    let (status, body) = server.json(&format!("/v1/users/{user}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["rfm"]["segment"], &body["rfm"]["frequency"]), (&segment.into(), &frequency.into()));
    let listed = body["sessions"].as_array().unwrap();
    assert_eq!(listed.len() as i64, sessions.min(20));
    let starts: Vec<&str> = listed.iter().map(|s| s["session_start"].as_str().unwrap()).collect();
    assert!(starts.windows(2).all(|w| w[0] > w[1]), "newest first: {starts:?}");
    let (_, one) = server.json(&format!("/v1/users/{user}?sessions=1"));
    assert_eq!(one["sessions"].as_array().unwrap().len(), 1);

    // A product with partners: its rows of product_pairs and product_similar, best first.
    let product: String =
        client.query_one("SELECT product_id FROM product_pairs ORDER BY orders_together DESC, product_id LIMIT 1", &[]).unwrap().get(0);
    let (status, body) = server.json(&format!("/v1/products/{product}/recommendations"));
    assert_eq!(status, 200, "{body}");
    let bought: Vec<String> = client
        .query(
            "SELECT other_product_id FROM product_pairs WHERE product_id = $1 ORDER BY orders_together DESC, other_product_id",
            &[&product],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let served: Vec<&str> = body["bought_together"].as_array().unwrap().iter().map(|p| p["product_id"].as_str().unwrap()).collect();
    assert_eq!(served, bought);
    let viewed: i64 = client.query_one("SELECT count(*) FROM product_similar WHERE product_id = $1", &[&product]).unwrap().get(0);
    assert!(viewed > 0, "the product is viewed with others too");
    let similar = body["viewed_together"].as_array().unwrap();
    assert_eq!(similar.len() as i64, viewed);
    let similarities: Vec<f64> = similar.iter().map(|p| p["similarity"].as_f64().unwrap()).collect();
    assert!(similarities.windows(2).all(|w| w[0] >= w[1]), "best first: {similarities:?}");

    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("clickflow_serve_requests_total{route=\"/v1/users/{user_id}\",status=\"200\"} 2"), "{metrics}");
    assert!(metrics.contains("clickflow_serve_requests_total{route=\"/health\",status=\"200\"} 1"), "{metrics}");
}

#[test]
fn bad_input_is_a_400_naming_the_field_and_unknown_ids_a_404() {
    let (db, file) = filled("serve_input");
    let server = Server::start(&db.url, &[], "serve-input");
    let user: String = db.client().query_one("SELECT user_id FROM sessions LIMIT 1", &[]).unwrap().get(0);
    for bad in ["0", "1001", "abc", "-1", "2.5", ""] {
        let (status, body) = server.json(&format!("/v1/users/{user}?sessions={bad}"));
        assert_eq!((status, &body["field"]), (400, &"sessions".into()), "sessions={bad}: {body}");
    }
    let long = "u".repeat(300);
    for (path, field) in [
        (format!("/v1/users/{long}"), "user_id"),
        ("/v1/users/a%01b".to_owned(), "user_id"),
        (format!("/v1/products/{long}/recommendations"), "product_id"),
    ] {
        let (status, body) = server.json(&path);
        assert_eq!((status, &body["field"]), (400, &field.into()), "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(field), "{body}");
    }
    for path in ["/v1/users/nobody-at-all", "/v1/products/P99999/recommendations", "/v1/nothing", "/"] {
        let (status, body) = server.json(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }

    // POST /v1/score: what is wrong with the body, named.
    let row = db
        .client()
        .query_one(
            "SELECT user_id, (extract(epoch FROM session_start) * 1000)::bigint, (extract(epoch FROM session_end) * 1000)::bigint
             FROM sessions WHERE event_count >= 2 ORDER BY user_id, session_start LIMIT 1",
            &[],
        )
        .unwrap();
    let good: Value = serde_json::from_str(&session_body(&file, row.get(0), row.get(1), row.get(2))).unwrap();
    let first = good["events"][0].clone();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut body = good.clone();
        f(&mut body);
        body.to_string()
    };
    let cases: Vec<(String, &str, &str)> = vec![
        ("not json".into(), "body", "not JSON"),
        ("{}".into(), "events", "array"),
        (r#"{"events": []}"#.into(), "events", "1 to"),
        (with(&|b| b["events"][1]["price"] = "free".into()), "events", "events[1] is not an event"),
        (with(&|b| b["events"][0].as_object_mut().unwrap().remove("event_id").map(|_| ()).unwrap()), "events", "events[0]"),
        (with(&|b| b["events"][1]["user_id"] = "someone-else".into()), "events", "events[1].user_id"),
        (
            with(&|b| {
                let mut later = first.clone();
                later["event_id"] = "later".into();
                later["event_time"] = "2030-01-01T00:00:00Z".into();
                b["events"].as_array_mut().unwrap().push(later);
            }),
            "events",
            "future_event_time",
        ),
        (
            with(&|b| {
                let mut later = first.clone();
                later["event_id"] = "two-hours-later".into();
                let t = dataflows::time::parse_rfc3339(first["event_time"].as_str().unwrap()).unwrap() + 2 * 3_600_000;
                later["event_time"] = dataflows::time::format_rfc3339(t).into();
                b["events"].as_array_mut().unwrap().push(later);
            }),
            "events",
            "more than one session",
        ),
    ];
    for (body, field, says) in cases {
        let (status, answer) = server.post("/v1/score", &body);
        assert_eq!((status, &answer["field"]), (400, &field.into()), "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{body}: {answer}");
    }
    // A key twice in an event: a dead letter for the processor, so a 400 here too.
    let twice = format!(r#"{{"events":[{{"user_id":"someone-else",{}]}}"#, &first.to_string()[1..]);
    let (status, answer) = server.post("/v1/score", &twice);
    assert_eq!((status, &answer["field"]), (400, &"events".into()), "{twice}: {answer}");
    assert!(answer["error"].as_str().unwrap().contains("events[0] is not an event"), "{answer}");
    let (status, answer) = server.post("/v1/score?model_version=forest-1999-01-01", &good.to_string());
    assert_eq!(status, 404, "{answer}");

    // As many events as the README says (over axum's default body limit of 2 MB), one
    // more, and a body over 16 MiB.
    let at = dataflows::time::parse_rfc3339(first["event_time"].as_str().unwrap()).unwrap();
    let many = |n: i64| {
        let events: Vec<Value> = (0..n)
            .map(|i| {
                let mut e = first.clone();
                e["event_id"] = format!("many-{i}").into();
                e["event_time"] = dataflows::time::format_rfc3339(at - i * 100).into();
                e
            })
            .collect();
        serde_json::json!({ "events": events }).to_string()
    };
    let body = many(10_000);
    assert!(body.len() > 2 << 20, "{} bytes", body.len());
    let (status, answer) = server.post("/v1/score", &body);
    assert_eq!((status, &answer["events"]), (200, &10_000.into()), "{}", answer["error"]);
    let (status, answer) = server.post("/v1/score", &many(10_001));
    assert_eq!((status, &answer["field"]), (400, &"events".into()), "{answer}");
    let (open, close) = (r#"{"events": [""#, r#""]}"#);
    let big = format!("{open}{}{close}", "x".repeat((16 << 20) + 1 - open.len() - close.len()));
    let (status, text) = server.request("POST", "/v1/score", &big);
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!((status, &answer["field"]), (413, &"body".into()), "{answer}");

    // A stored version this build cannot use: a 503 naming it, not a dropped connection.
    let tamper = |name: &str, change: &str| {
        let sql = format!(
            "INSERT INTO risk_models (model_version, valid_from, sessions, model)
             SELECT '{name}', valid_from - interval '{} days', sessions, {change}
             FROM risk_models WHERE model_version LIKE 'forest-%' LIMIT 1",
            1000 + name.len()
        );
        assert_eq!(db.client().execute(&sql, &[]).unwrap(), 1, "{sql}");
    };
    tamper("other-features", r#"jsonb_set(model, '{features}', '["log_events"]')"#);
    tamper("past-the-features", r#"jsonb_set(model, '{forest,trees,0,0,Split,feature}', '40')"#);
    for name in ["other-features", "past-the-features"] {
        let (status, answer) = server.post(&format!("/v1/score?model_version={name}"), &good.to_string());
        assert_eq!(status, 503, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(&format!("model version {name} in risk_models cannot be used")), "{answer}");
    }
}

#[test]
fn scoring_a_session_gives_what_the_pipeline_stored() {
    let (db, file) = filled("serve_score");
    let server = Server::start(&db.url, &[], "serve-score");
    let mut client = db.client();
    let ms = |c: &str| format!("(extract(epoch FROM {c}) * 1000)::bigint");
    // Flagged sessions, scored by a forest: the same score, reasons and version.
    let flagged = client
        .query(
            &format!(
                "SELECT user_id, {}, {}, score, reasons, model_version FROM session_risk WHERE model_version LIKE 'forest-%'
                 ORDER BY user_id LIMIT 5",
                ms("session_start"),
                ms("session_end")
            ),
            &[],
        )
        .unwrap();
    assert_eq!(flagged.len(), 5, "sessions flagged by a forest version");
    for r in &flagged {
        let (user, version): (String, String) = (r.get(0), r.get(5));
        let (status, answer) = server.post(&format!("/v1/score?model_version={version}"), &session_body(&file, &user, r.get(1), r.get(2)));
        assert_eq!(status, 200, "{answer}");
        let reasons: Vec<String> = r.get(4);
        assert_eq!(answer["score"], i64::from(r.get::<_, i16>(3)), "{user}: {answer}");
        assert_eq!(answer["reasons"], serde_json::json!(reasons), "{user}: {answer}");
        assert_eq!((&answer["model_version"], &answer["flagged"]), (&version.clone().into(), &true.into()), "{answer}");
    }
    // Shoppers' sessions of the second day, not flagged: below the threshold by that day's
    // version; and the latest version is the default.
    let calm = client
        .query(
            &format!(
                "SELECT s.user_id, {}, {}, m.model_version FROM sessions s
                 JOIN risk_models m ON m.valid_from = date_trunc('day', (s.session_end + interval '30 minutes') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                 WHERE m.model_version LIKE 'forest-%' AND s.event_count >= 3
                     AND NOT EXISTS (SELECT 1 FROM session_risk r WHERE r.user_id = s.user_id AND r.session_start = s.session_start)
                 ORDER BY s.user_id LIMIT 20",
                ms("s.session_start"),
                ms("s.session_end")
            ),
            &[],
        )
        .unwrap();
    assert_eq!(calm.len(), 20);
    for r in &calm {
        let (user, version): (String, String) = (r.get(0), r.get(3));
        let (status, answer) = server.post(&format!("/v1/score?model_version={version}"), &session_body(&file, &user, r.get(1), r.get(2)));
        assert_eq!(status, 200, "{answer}");
        assert!(answer["score"].as_u64().unwrap() < 70 && answer["flagged"] == false, "{user}: {answer}");
        assert_eq!(answer["features"]["events"], answer["events"], "{answer}");
    }
    let latest: String = client.query_one("SELECT model_version FROM risk_models ORDER BY valid_from DESC LIMIT 1", &[]).unwrap().get(0);
    let r = &calm[0];
    let (_, answer) = server.post("/v1/score", &session_body(&file, r.get(0), r.get(1), r.get(2)));
    assert_eq!(answer["model_version"], latest, "{answer}");
    // The user's page shows the flagged session's risk.
    let user: String = flagged[0].get(0);
    let (status, body) = server.json(&format!("/v1/users/{user}"));
    assert_eq!(status, 200, "{body}");
    assert!(body["flagged_sessions"].as_i64().unwrap() >= 1, "{body}");
    let risky: Vec<&Value> = body["sessions"].as_array().unwrap().iter().filter(|s| !s["risk_score"].is_null()).collect();
    assert!(!risky.is_empty() && risky[0]["risk_reasons"].as_array().is_some_and(|r| !r.is_empty()), "{body}");
}

#[test]
fn a_missing_or_silent_database_is_a_503_not_a_hang() {
    // Nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Server::start(&format!("postgres://postgres@127.0.0.1:{closed}/x"), &["--db-timeout", "500ms"], "serve-closed");
    let (status, body) = server.json("/health");
    assert_eq!((status, &body["status"], &body["database"]), (503, &"unavailable".into(), &"unreachable".into()), "{body}");
    let (status, body) = server.json("/v1/users/u1");
    assert_eq!(status, 503, "{body}");

    // Something accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let server = Server::start(&format!("postgres://postgres@127.0.0.1:{port}/x"), &["--db-timeout", "500ms"], "serve-silent");
    let (status, body) = server.json("/v1/products/P1/recommendations");
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("did not answer"), "{body}");

    // A database that goes away while serving, and comes back.
    let pg = PgServer::start("serve");
    let empty = scratch("serve-restart-input").join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    clickflow(&["process", "--input", empty.to_str().unwrap(), "--postgres", &pg.url("postgres"), "--quiet"]);
    let server = Server::start(&pg.url("postgres"), &["--db-timeout", "500ms"], "serve-restart");
    assert_eq!(server.json("/health").0, 200);
    let one = r#"{"events": [{"event_id": "e1", "event_time": "2026-11-01T00:00:00Z", "event_type": "page_view", "user_id": "u1",
        "session_id": "s1", "page": "/", "device": "mobile", "country": "DE", "referrer": "direct", "user_agent": "ua", "ip": "10.0.0.1"}]}"#;
    let (status, body) = server.post("/v1/score", one);
    assert_eq!(status, 503, "no session scored yet, no model version: {body}");
    assert!(body["error"].as_str().unwrap().contains("no model version"), "{body}");
    pg.down();
    assert_eq!(server.json("/health").0, 503);
    pg.up();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.json("/health").0 != 200 {
        assert!(Instant::now() < deadline, "the server did not reconnect");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn concurrent_clients_all_get_their_answers() {
    let (db, _) = filled("serve_load");
    let server = Server::start(&db.url, &[], "serve-load");
    let users: Vec<String> =
        db.client().query("SELECT DISTINCT user_id FROM sessions ORDER BY 1 LIMIT 50", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let (clients, each) = (16, 40);
    let latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let (server, users) = (&server, &users);
                s.spawn(move || {
                    (0..each)
                        .map(|i| {
                            let user = &users[(c * each + i) % users.len()];
                            let started = Instant::now();
                            let (status, body) = server.get(&format!("/v1/users/{user}"));
                            assert_eq!(status, 200, "{user}: {body}");
                            started.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(latencies.len(), clients * each);
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    // Figures for the README (a debug build: see the README for how they were taken).
    println!(
        "{} requests from {clients} clients: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() * 99 / 100],
        ms[ms.len() - 1]
    );
}
