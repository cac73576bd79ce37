//! `clickflow serve`: the results over HTTP, read from PostgreSQL as the processor wrote
//! them. `GET /health`, `GET /metrics` (Prometheus), `GET /v1/users/{user_id}` (RFM
//! segment, recent sessions and their risk), `GET /v1/products/{product_id}/recommendations`
//! (bought together, viewed together), and `POST /v1/score` (a session's events scored
//! by a stored model version).
//!
//! Owns the HTTP server and its read-only queries; never writes to the database and
//! computes no figure of its own: the tables' rows are served as they are, and a session
//! is scored by the pipeline's own code (the event parser, `risk::features`,
//! `risk::score`). Every answer
//! is JSON (but `/metrics`); bad input is a 400 naming the field, a `POST /v1/score` body
//! over 16 MiB a 413, an unknown id a 404, and a database that does not answer within
//! `--db-timeout` a 503, never a hang.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use dataflows::event::{parse_event, Event};
use dataflows::operators::sessions::Click;
use dataflows::risk::features::Features;
use dataflows::risk::score::Model;
use dataflows::time::{format_rfc3339, Millis};

use crate::sink::postgres::redact;

pub struct Options {
    pub postgres: String,
    pub addr: String,
    /// Longest wait for a connection or a query.
    pub db_timeout: Duration,
    /// Longest time a request may take, all included.
    pub request_timeout: Duration,
    /// Connections to PostgreSQL at most.
    pub connections: usize,
    /// `POST /v1/score`: the gap that splits sessions, as the processor's.
    pub session_gap: Millis,
    /// `POST /v1/score`: `flagged` from this score on, as the processor's.
    pub risk_threshold: u8,
}

/// Sessions `GET /v1/users/{user_id}` returns without `?sessions=N`, and at most.
const SESSIONS_DEFAULT: i64 = 20;
const SESSIONS_MAX: i64 = 1000;
/// The longest id accepted in a path.
const ID_MAX_BYTES: usize = 256;
/// Events `POST /v1/score` takes at most.
const SCORE_EVENTS_MAX: usize = 10_000;
/// The longest `POST /v1/score` body: room for [`SCORE_EVENTS_MAX`] events of 1.6 KiB
/// (a simulated event is about 350 bytes).
const SCORE_BODY_MAX: usize = 16 << 20;

struct Served {
    pool: Pool,
    db_timeout: Duration,
    session_gap: Millis,
    risk_threshold: u8,
    /// Model versions read so far (a version never changes once stored).
    models: Mutex<HashMap<String, Arc<Model>>>,
    /// Per (route, status): requests and their total seconds.
    requests: Mutex<BTreeMap<(String, u16), (u64, f64)>>,
}

/// Serves until SIGTERM or SIGINT.
pub fn run(options: Options, stop: Arc<AtomicBool>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(serve(options, stop))
}

async fn serve(options: Options, stop: Arc<AtomicBool>) -> Result<()> {
    let mut config: tokio_postgres::Config =
        options.postgres.parse().with_context(|| format!("cannot parse the PostgreSQL URL {}", redact(&options.postgres)))?;
    config.connect_timeout(options.db_timeout);
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(manager)
        .max_size(options.connections)
        .wait_timeout(Some(options.db_timeout))
        .create_timeout(Some(options.db_timeout))
        .recycle_timeout(Some(options.db_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .context("cannot set up the connection pool")?;
    let served = Arc::new(Served {
        pool,
        db_timeout: options.db_timeout,
        session_gap: options.session_gap,
        risk_threshold: options.risk_threshold,
        models: Mutex::new(HashMap::new()),
        requests: Mutex::new(BTreeMap::new()),
    });
    let request_timeout = options.request_timeout;
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/users/{user_id}", get(user))
        .route("/v1/products/{product_id}/recommendations", get(recommendations))
        .route("/v1/score", post(score).layer(DefaultBodyLimit::max(SCORE_BODY_MAX)))
        .fallback(|| async { ApiError::NotFound("no such route: see the README's API section".into()) })
        .layer(axum::middleware::from_fn_with_state(served.clone(), move |state, request, next| {
            account(state, request, next, request_timeout)
        }))
        .with_state(served);
    let listener = tokio::net::TcpListener::bind(&options.addr).await.with_context(|| format!("cannot listen on {}", options.addr))?;
    tracing::info!(addr = %listener.local_addr()?, database = redact(&options.postgres), "serving the API");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .context("the HTTP server failed")
}

/// Bounds every request by `limit` and counts it for `/metrics`.
async fn account(State(served): State<Arc<Served>>, request: Request, next: Next, limit: Duration) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!("the request took longer than {} ms", limit.as_millis())).into_response(),
    };
    let mut requests = served.requests.lock().expect("not poisoned");
    let entry = requests.entry((route, response.status().as_u16())).or_default();
    entry.0 += 1;
    entry.1 += started.elapsed().as_secs_f64();
    response
}

/// What goes wrong, as the client sees it.
enum ApiError {
    /// 400: `field` is wrong, as `message` says.
    BadRequest { field: &'static str, message: String },
    /// 404.
    NotFound(String),
    /// 413: the body is longer than its route takes.
    TooLarge(String),
    /// 503: the database did not answer, or the request took too long.
    Unavailable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::BadRequest { field, message } => (StatusCode::BAD_REQUEST, json!({ "error": message, "field": field })),
            ApiError::NotFound(message) => (StatusCode::NOT_FOUND, json!({ "error": message })),
            ApiError::TooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, json!({ "error": message, "field": "body" })),
            ApiError::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": message })),
        };
        (status, Json(body)).into_response()
    }
}

impl Served {
    /// The one JSON value `sql` returns (built by PostgreSQL), within the database timeout.
    async fn json(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Value, ApiError> {
        let unavailable = |e: String| ApiError::Unavailable(format!("the database did not answer: {e}"));
        let work = async {
            let client = self.pool.get().await.map_err(|e| unavailable(e.to_string()))?;
            let row = client.query_one(sql, params).await.map_err(|e| match e.as_db_error() {
                // Reachable, but not (yet) a clickflow database: no processor has run on it.
                Some(db) => ApiError::Unavailable(format!("the database refused the query: {}", db.message())),
                None => unavailable(e.to_string()),
            })?;
            row.try_get::<_, Option<Value>>(0).map(|v| v.unwrap_or(Value::Null)).map_err(|e| unavailable(e.to_string()))
        };
        tokio::time::timeout(self.db_timeout, work)
            .await
            .unwrap_or_else(|_| Err(unavailable(format!("no answer within {} ms", self.db_timeout.as_millis()))))
    }
}

impl Served {
    /// Model version `wanted`, or else the latest stored, read once.
    async fn model(&self, wanted: Option<&String>) -> Result<(String, Arc<Model>), ApiError> {
        let latest = "SELECT to_json((SELECT model_version FROM risk_models
                                      WHERE $1::text IS NULL OR model_version = $1 ORDER BY valid_from DESC LIMIT 1))";
        let version = match self.json(latest, &[&wanted]).await? {
            Value::String(v) => v,
            _ => {
                return Err(match wanted {
                    Some(v) => ApiError::NotFound(format!("no model version {v:?} in risk_models")),
                    None => ApiError::Unavailable("no model version in risk_models yet: no session has been scored".into()),
                });
            }
        };
        if let Some(model) = self.models.lock().expect("not poisoned").get(&version) {
            return Ok((version, model.clone()));
        }
        let stored = self.json("SELECT to_json((SELECT model::text FROM risk_models WHERE model_version = $1))", &[&version]).await?;
        let model = Model::read(stored.as_str().unwrap_or_default())
            .map_err(|e| ApiError::Unavailable(format!("model version {version} in risk_models cannot be used: {e}")))?;
        let model = Arc::new(model);
        self.models.lock().expect("not poisoned").insert(version.clone(), model.clone());
        Ok((version, model))
    }
}

/// An id from the path: not empty, at most [`ID_MAX_BYTES`], no control characters.
fn id(field: &'static str, value: &str) -> Result<(), ApiError> {
    let problem = if value.is_empty() {
        "is empty"
    } else if value.len() > ID_MAX_BYTES {
        "is longer than 256 bytes"
    } else if value.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(ApiError::BadRequest { field, message: format!("{field} {problem}") })
}

/// `GET /health`: 200 when the database answers, with the age of the processor's latest
/// progress report and its watermark; 503 when it does not.
async fn health(State(served): State<Arc<Served>>) -> Response {
    let sql = "SELECT json_build_object(
                   'latest_progress_age_seconds', (SELECT extract(epoch FROM now() - max(reported_at))::float8 FROM pipeline_progress),
                   'watermark', (SELECT CASE WHEN watermark_ms = 9223372036854775807 THEN 'infinity'
                                             ELSE to_char(to_timestamp(watermark_ms / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') END
                                 FROM pipeline_state))";
    match served.json(sql, &[]).await {
        Ok(mut figures) => {
            figures["status"] = json!("ok");
            figures["database"] = json!("reachable");
            Json(figures).into_response()
        }
        Err(ApiError::Unavailable(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "database": "unreachable", "error": e })))
                .into_response()
        }
        Err(other) => other.into_response(),
    }
}

/// `GET /metrics`: requests and their time by route and status, and the pool.
async fn metrics(State(served): State<Arc<Served>>) -> Response {
    use std::fmt::Write as _;
    let mut text = String::new();
    let requests = served.requests.lock().expect("not poisoned").clone();
    let _ = writeln!(text, "# HELP clickflow_serve_requests_total Requests answered, by route and status.");
    let _ = writeln!(text, "# TYPE clickflow_serve_requests_total counter");
    for ((route, status), (n, _)) in &requests {
        let _ = writeln!(text, "clickflow_serve_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
    }
    let _ = writeln!(text, "# HELP clickflow_serve_request_seconds_total Time spent answering, by route and status.");
    let _ = writeln!(text, "# TYPE clickflow_serve_request_seconds_total counter");
    for ((route, status), (_, seconds)) in &requests {
        let _ = writeln!(text, "clickflow_serve_request_seconds_total{{route=\"{route}\",status=\"{status}\"}} {seconds}");
    }
    let status = served.pool.status();
    let _ = writeln!(text, "# HELP clickflow_serve_database_connections Connections to PostgreSQL, open and idle.");
    let _ = writeln!(text, "# TYPE clickflow_serve_database_connections gauge");
    let _ = writeln!(text, "clickflow_serve_database_connections{{state=\"open\"}} {}", status.size);
    let _ = writeln!(text, "clickflow_serve_database_connections{{state=\"idle\"}} {}", status.available);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /v1/users/{user_id}?sessions=N`: the user's `customer_rfm` row (null before
/// their first purchase counts), how many of their sessions are in `session_risk`, and
/// their N latest sessions (20 by default, at most 1000), newest first, each with its
/// risk score and reasons when flagged (null otherwise); 404 for a user with neither.
async fn user(
    State(served): State<Arc<Served>>,
    Path(user_id): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    id("user_id", &user_id)?;
    let limit = match query.get("sessions") {
        None => SESSIONS_DEFAULT,
        Some(n) => n.parse::<i64>().ok().filter(|n| (1..=SESSIONS_MAX).contains(n)).ok_or_else(|| ApiError::BadRequest {
            field: "sessions",
            message: format!("sessions must be a whole number from 1 to {SESSIONS_MAX}, not {n:?}"),
        })?,
    };
    let found = served
        .json(
            "SELECT json_build_object(
                 'rfm', (SELECT row_to_json(r) FROM (
                     SELECT as_of, last_purchase_at, recency_days, frequency, monetary::float8 AS monetary,
                            r_score, f_score, m_score, segment
                     FROM customer_rfm WHERE user_id = $1) r),
                 'flagged_sessions', (SELECT count(*) FROM session_risk WHERE user_id = $1),
                 'sessions', (SELECT coalesce(json_agg(s ORDER BY s.session_start DESC), '[]') FROM (
                     SELECT s.session_start, s.session_end, s.event_count, s.product_views, s.cart_adds, s.purchases,
                            s.revenue::float8 AS revenue, s.converted, s.landing_page, s.device, s.country, s.referrer, s.is_final,
                            r.score AS risk_score, r.reasons AS risk_reasons, r.model_version AS risk_model_version
                     FROM sessions s LEFT JOIN session_risk r USING (user_id, session_start)
                     WHERE s.user_id = $1 ORDER BY s.session_start DESC LIMIT $2) s))",
            &[&user_id, &limit],
        )
        .await?;
    if found["rfm"].is_null() && found["sessions"].as_array().is_none_or(Vec::is_empty) {
        return Err(ApiError::NotFound(format!("no user {user_id:?}: no session and no purchase")));
    }
    Ok(Json(json!({
        "user_id": user_id,
        "rfm": found["rfm"],
        "flagged_sessions": found["flagged_sessions"],
        "sessions": found["sessions"],
    })))
}

/// `GET /v1/products/{product_id}/recommendations`: its rows of `product_pairs` (bought
/// together) and `product_similar` (viewed together), best first; 404 for a product
/// never seen in an event.
async fn recommendations(State(served): State<Arc<Served>>, Path(product_id): Path<String>) -> Result<Json<Value>, ApiError> {
    id("product_id", &product_id)?;
    let found = served
        .json(
            "SELECT json_build_object(
                 'known', EXISTS (SELECT 1 FROM product_stats WHERE product_id = $1),
                 'bought_together', (SELECT coalesce(json_agg(p ORDER BY p.orders_together DESC, p.product_id), '[]') FROM (
                     SELECT other_product_id AS product_id, orders_together, confidence, lift
                     FROM product_pairs WHERE product_id = $1) p),
                 'viewed_together', (SELECT coalesce(json_agg(v ORDER BY v.similarity DESC, v.product_id), '[]') FROM (
                     SELECT other_product_id AS product_id, sessions_together, similarity
                     FROM product_similar WHERE product_id = $1) v))",
            &[&product_id],
        )
        .await?;
    if found["known"] != json!(true) {
        return Err(ApiError::NotFound(format!("no product {product_id:?} in any event")));
    }
    Ok(Json(json!({
        "product_id": product_id,
        "bought_together": found["bought_together"],
        "viewed_together": found["viewed_together"],
    })))
}

/// `POST /v1/score[?model_version=V]`: the events of one session (`{"events": [...]}`,
/// each as the contract's event) scored as the pipeline scores a final session, by the
/// latest stored model version or by V: score, reasons, model version, whether the score
/// reaches `--risk-threshold`, the forest's own score and the features. 400 naming what
/// is wrong with the body; 404 for an unknown V; 503 before any version is stored.
async fn score(
    State(served): State<Arc<Served>>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!("the body is longer than {} MiB", SCORE_BODY_MAX >> 20)),
        _ => ApiError::BadRequest { field: "body", message: format!("the body cannot be read: {}", e.body_text()) },
    })?;
    let events = session_events(&body, served.session_gap, now_ms())?;
    let (version, model) = served.model(query.get("model_version")).await?;
    let clicks: Vec<Click> = events.iter().map(|e| Click::of(e).1).collect();
    let features = Features::of(&clicks);
    let a = model.assess(&features);
    Ok(Json(json!({
        "user_id": events[0].user_id.as_str(),
        "session_start": format_rfc3339(events[0].event_time),
        "events": events.len(),
        "score": a.score,
        "reasons": a.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "flagged": a.score >= served.risk_threshold,
        "model_version": version,
        "model_score": a.model_score,
        "features": features,
    })))
}

fn now_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// The events of one session from a `POST /v1/score` body, parsed as the processor
/// parses a message, each `event_id` once, sorted as a session holds them: one user, no
/// gap of `gap` or more.
fn session_events(body: &[u8], gap: Millis, now: Millis) -> Result<Vec<Event>, ApiError> {
    let bad = |field: &'static str, message: String| ApiError::BadRequest { field, message };
    let body: BTreeMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| bad("body", format!("the body is not JSON holding an object: {e}")))?;
    let items: Vec<&RawValue> = body
        .get("events")
        .and_then(|v| serde_json::from_str(v.get()).ok())
        .ok_or_else(|| bad("events", "events must be an array of events".into()))?;
    if items.is_empty() || items.len() > SCORE_EVENTS_MAX {
        return Err(bad("events", format!("events must hold 1 to {SCORE_EVENTS_MAX} events, not {}", items.len())));
    }
    let mut seen = HashSet::new();
    let mut events = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let e = parse_event(item.get().as_bytes(), now)
            .map_err(|r| bad("events", format!("events[{i}] is not an event: {}: {}", r.reason.as_str(), r.detail)))?;
        if let Some(first) = events.first().filter(|f: &&Event| f.user_id != e.user_id) {
            let message = format!("events[{i}].user_id is {:?}, not {:?}: a session is one user's", e.user_id, first.user_id);
            return Err(bad("events", message));
        }
        if seen.insert(e.event_id.clone()) {
            events.push(e);
        }
    }
    events.sort_by(|a, b| (a.event_time, &a.event_id).cmp(&(b.event_time, &b.event_id)));
    if let Some(w) = events.windows(2).find(|w| w[1].event_time - w[0].event_time >= gap) {
        return Err(bad(
            "events",
            format!(
                "the events are more than one session: nothing between {} and {} (the session gap is {} s)",
                format_rfc3339(w[0].event_time),
                format_rfc3339(w[1].event_time),
                gap / 1000
            ),
        ));
    }
    Ok(events)
}
