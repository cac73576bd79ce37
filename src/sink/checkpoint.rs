//! What a restarted processor reads back from PostgreSQL: the [`Checkpoint`] (the
//! watermark and each source partition's position and totals, as of the last committed
//! transaction), the events that the open rows were computed from, and the ids still
//! within the dedupe horizon.
//!
//! Owns those queries and nothing else. Why the events it returns rebuild exactly the
//! state an uninterrupted run would hold is argued at [`PgSink::open_state`]; the
//! processor feeds them to the dataflow in its restore epoch.

use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use dataflows::event::{Event, EventType, Text};
use dataflows::ingest::Counts;
use dataflows::operators::cohorts::DAY;
use dataflows::pipeline::RestoredPurchase;
use dataflows::risk::score::{sample_key, Model, SAMPLE};
use dataflows::rows::{ModelRow, Position};
use dataflows::time::{window_start, Millis};
use postgres::fallible_iterator::FallibleIterator;

use super::postgres::PgSink;

/// One source partition as last committed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub position: Position,
    /// For files: size and a hash of the first block (see `source::file`).
    pub identity: Option<String>,
    pub counts: Counts,
    pub max_event_time: Option<Millis>,
}

/// What a restart feeds back to rebuild the operators' state.
#[derive(Default)]
pub struct OpenState {
    /// The events the open rows were computed from.
    pub events: Vec<Event>,
    /// `(user_id, time of their first accepted event)` of every user: their cohort
    /// (CONTRACT §7), which never closes.
    pub first_seen: Vec<(Text, Millis)>,
    /// `(user_id, day, revenue in cents)` of every user active on a day still open.
    pub activity: Vec<(Text, Millis, i64)>,
    /// Every purchase, for the daily analytics (RFM, pairs).
    pub purchases: Vec<RestoredPurchase>,
    /// The time of the last event of each final session that `events` do not rebuild,
    /// and the products it viewed, for `product_similar`.
    pub viewed: Vec<(Millis, Vec<Text>)>,
    /// The latest event time accepted, if any.
    pub latest: Option<Millis>,
    /// The stored model versions a rebuilt or new session may be scored with.
    pub risk_versions: Vec<ModelRow>,
    /// The events of each final session that `events` do not rebuild and that can be in
    /// the risk sample (the bottom-k by `sample_key`).
    pub risk_sample: Vec<Vec<Event>>,
}

/// Everything the last committed transaction recorded besides rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// W of the last committed epoch; `Millis::MIN` on a database never written.
    pub watermark: Millis,
    pub sources: BTreeMap<String, Committed>,
}

/// `events_raw`'s columns as an [`Event`] needs them, times in milliseconds.
const EVENT_COLUMNS: &str = "e.event_id, (extract(epoch FROM e.event_time) * 1000)::bigint, e.event_type, e.user_id, e.page,
     e.product_id, e.category, (e.price * 100)::bigint, e.quantity::bigint, e.order_id, e.device, e.country, e.referrer,
     e.user_agent, e.ip";

impl PgSink {
    /// The watermark and source positions of the last committed transaction.
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        let client = self.client();
        let watermark = client
            .query_opt("SELECT watermark_ms FROM pipeline_state", &[])
            .context("cannot read pipeline_state")?
            .map_or(Millis::MIN, |r| r.get(0));
        let rows = client
            .query(
                "SELECT source, next_offset, lines_read, identity, max_event_time_ms, input_events, accepted_events, late_events,
                        duplicate_events, dead_letters
                 FROM source_positions",
                &[],
            )
            .context("cannot read source_positions")?;
        let count = |r: &postgres::Row, i: usize| r.get::<_, i64>(i) as u64;
        let sources = rows
            .iter()
            .map(|r| {
                let committed = Committed {
                    position: Position { offset: r.get(1), line: r.get(2) },
                    identity: r.get(3),
                    max_event_time: r.get(4),
                    counts: Counts {
                        input: count(r, 5),
                        accepted: count(r, 6),
                        late: count(r, 7),
                        duplicates: count(r, 8),
                        dead_letters: count(r, 9),
                    },
                };
                (r.get(0), committed)
            })
            .collect();
        Ok(Checkpoint { watermark, sources })
    }

    /// The accepted events that the rows still open in the database were computed from:
    /// fed to the dataflow with the committed W, they rebuild every operator's open state
    /// exactly.
    ///
    /// Every open row (a session, or a window of traffic, product stats, funnel or
    /// conversion) depends only on events at or after its start; `L` is the earliest
    /// such start, so every event at or after `L` is returned. A user's events are also
    /// returned back to the start of the (final) session that holds their first event
    /// after `L`, so that each user's events begin at a session boundary: sessions are
    /// then split as before, and no truncated session reaches the funnel. Rows the
    /// returned events make final again (every window and session before W) are already
    /// final in the database and are released at once; the sink ignores what the
    /// restore epoch emits.
    ///
    /// Cohorts are restored apart, in two aggregates rather than from events: a cohort
    /// never closes, so every user comes back with the time of their first event, and
    /// each user active on a day still open (by `watermark`, the committed W) with their
    /// revenue that day. That is all the cohort operators hold, and it does not pull `L`
    /// back to the start of the day. RFM and the pairs get every purchase back, and the
    /// latest event time (purchases are a few percent of events). The similar products
    /// get the products viewed by each final session that ended before `L` (grouped in
    /// PostgreSQL): the returned events rebuild every session that ends at or after `L`,
    /// and those that are final reach the similar products again in the restore epoch.
    /// The risk scoring, alike, gets the events of the sessions that ended before `L` and
    /// can be in its sample, and the stored model versions from the day of `L` or of the
    /// committed W, whichever is earlier, on: every session the restore makes final again
    /// ends at or after `L`, every new one becomes final after W, and every version a
    /// committed session was scored with is stored.
    pub fn open_state(&mut self, session_gap: Millis, watermark: Millis) -> Result<OpenState> {
        let client = self.client();
        let purchases = client
            .query(
                "SELECT user_id, (extract(epoch FROM event_time) * 1000)::bigint, order_id, event_id,
                        (coalesce(price * 100, 0) * coalesce(quantity, 0))::bigint, product_id
                 FROM events_raw WHERE event_type = 'purchase'",
                &[],
            )
            .context("cannot read the purchases from events_raw")?
            .iter()
            .map(|r| RestoredPurchase {
                user: Text::new(r.get::<_, &str>(0)),
                time: r.get(1),
                order_id: r.get::<_, Option<&str>>(2).map(Text::new),
                event_id: Text::new(r.get::<_, &str>(3)),
                revenue_cents: r.get(4),
                product: r.get::<_, Option<&str>>(5).map(Text::new),
            })
            .collect();
        let latest: Option<Millis> = client
            .query_one("SELECT (extract(epoch FROM max(event_time)) * 1000)::bigint FROM events_raw", &[])
            .context("cannot read the latest event time from events_raw")?
            .get(0);
        let first_seen = client
            .query("SELECT user_id, (extract(epoch FROM min(event_time)) * 1000)::bigint FROM events_raw GROUP BY user_id", &[])
            .context("cannot read the users' first events from events_raw")?
            .iter()
            .map(|r| (Text::new(r.get::<_, &str>(0)), r.get(1)))
            .collect();
        let activity = match watermark {
            Millis::MAX => Vec::new(),
            w => {
                let since = (w != Millis::MIN).then(|| instant(window_start(w, DAY)));
                client
                    .query(
                        "SELECT user_id, (extract(epoch FROM date_trunc('day', event_time AT TIME ZONE 'UTC')) * 1000)::bigint,
                                sum(CASE WHEN event_type = 'purchase' THEN coalesce(price * 100, 0) * coalesce(quantity, 0) ELSE 0 END)::bigint
                         FROM events_raw WHERE $1::timestamptz IS NULL OR event_time >= $1 GROUP BY 1, 2",
                        &[&since],
                    )
                    .context("cannot read the open days' activity from events_raw")?
                    .iter()
                    .map(|r| (Text::new(r.get::<_, &str>(0)), r.get(1), r.get(2)))
                    .collect()
            }
        };
        let bound_ms: Option<Millis> = client
            .query_one(
                "SELECT (extract(epoch FROM least(
                     (SELECT min(session_start) FROM sessions WHERE NOT is_final),
                     (SELECT min(window_start) FROM traffic WHERE NOT is_final),
                     (SELECT min(window_start) FROM product_stats WHERE NOT is_final),
                     (SELECT min(window_start) FROM funnel WHERE NOT is_final),
                     (SELECT min(window_start) FROM conversion WHERE NOT is_final))) * 1000)::bigint",
                &[],
            )
            .context("cannot find the open rows")?
            .get(0);
        let bound = bound_ms.map(instant);
        let viewed = client
            .query(
                "SELECT (extract(epoch FROM s.session_end) * 1000)::bigint, array_agg(DISTINCT e.product_id)
                 FROM sessions s JOIN events_raw e
                     ON e.user_id = s.user_id AND e.event_time >= s.session_start AND e.event_time <= s.session_end
                 WHERE s.is_final AND ($1::timestamptz IS NULL OR s.session_end < $1)
                     AND e.event_type = 'product_view' AND e.product_id IS NOT NULL
                 GROUP BY s.user_id, s.session_start, s.session_end",
                &[&bound],
            )
            .context("cannot read the products viewed in final sessions from events_raw")?
            .iter()
            .map(|r| (r.get(0), r.get::<_, Vec<&str>>(1).into_iter().map(Text::new).collect()))
            .collect();
        let (risk_versions, risk_sample) = self.risk_state(bound_ms, watermark)?;
        let Some(bound) = bound else {
            return Ok(OpenState { events: Vec::new(), first_seen, activity, purchases, viewed, latest, risk_versions, risk_sample });
        };
        let client = self.client();
        let near = bound + Duration::from_millis(session_gap.max(0) as u64);
        let sql = format!(
            "WITH near AS (
                 SELECT DISTINCT user_id FROM events_raw WHERE event_time >= $1 AND event_time < $2),
             straddling AS (
                 SELECT s.user_id, s.session_start FROM near JOIN sessions s USING (user_id)
                 WHERE s.session_start < $1 AND s.session_end >= $1)
             SELECT {EVENT_COLUMNS} FROM events_raw e WHERE e.event_time >= $1
             UNION ALL
             SELECT {EVENT_COLUMNS} FROM straddling s JOIN events_raw e
                 ON e.user_id = s.user_id AND e.event_time >= s.session_start AND e.event_time < $1"
        );
        let rows = client.query(&sql, &[&bound, &near]).context("cannot read the open rows' events from events_raw")?;
        let events = rows.iter().map(event).collect::<Result<_>>()?;
        Ok(OpenState { events, first_seen, activity, purchases, viewed, latest, risk_versions, risk_sample })
    }

    /// The risk scoring's part of [`PgSink::open_state`], for the earliest open row's
    /// start `bound` and the committed `watermark`: the versions valid from the UTC day
    /// of the earlier of the two on. A session final after the restart ends at or after
    /// `bound` (rebuilt) or becomes final after `watermark` (new; with a watermark delay
    /// longer than the session gap, that can be a day before `bound`'s).
    fn risk_state(&mut self, bound: Option<Millis>, watermark: Millis) -> Result<(Vec<ModelRow>, Vec<Vec<Event>>)> {
        let client = self.client();
        let from = match (bound, watermark) {
            // Nothing was final: no version was stored.
            (_, Millis::MIN) => None,
            (b, Millis::MAX) => b,
            (b, w) => Some(b.map_or(w, |b| b.min(w))),
        };
        let versions = match from {
            None => Vec::new(),
            Some(from) => client
                .query(
                    "SELECT model_version, (extract(epoch FROM valid_from) * 1000)::bigint, sessions, model::text
                     FROM risk_models WHERE valid_from >= $1",
                    &[&instant(window_start(from, DAY))],
                )
                .context("cannot read the model versions from risk_models")?
                .iter()
                .map(|r| {
                    let row = ModelRow {
                        model_version: Text::new(r.get::<_, &str>(0)),
                        valid_from: r.get(1),
                        sessions: r.get(2),
                        model: r.get(3),
                    };
                    Model::read(&row.model)
                        .map_err(|e| anyhow!("cannot restore model version {} from risk_models: {e}", row.model_version))?;
                    Ok(row)
                })
                .collect::<Result<_>>()?,
        };
        // The bottom-SAMPLE by key, streamed: a max-heap that never holds more.
        let mut sessions: BinaryHeap<(u64, String, Millis, Millis)> = BinaryHeap::with_capacity(SAMPLE + 1);
        {
            let mut rows = client
                .query_raw(
                    "SELECT user_id, (extract(epoch FROM session_start) * 1000)::bigint, (extract(epoch FROM session_end) * 1000)::bigint
                     FROM sessions WHERE is_final AND ($1::timestamptz IS NULL OR session_end < $1)",
                    [bound.map(instant)],
                )
                .context("cannot read the final sessions")?;
            while let Some(r) = rows.next().context("cannot read the final sessions")? {
                let (user, start): (String, Millis) = (r.get(0), r.get(1));
                sessions.push((sample_key(&user, start), user, start, r.get(2)));
                if sessions.len() > SAMPLE {
                    sessions.pop();
                }
            }
        }
        let sessions = sessions.into_sorted_vec();
        let (users, starts, ends): (Vec<&str>, Vec<SystemTime>, Vec<SystemTime>) =
            sessions.iter().map(|(_, u, s, e)| (u.as_str(), instant(*s), instant(*e))).collect();
        let rows = client
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS}, s.n FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) WITH ORDINALITY
                         AS s(user_id, session_start, session_end, n)
                     JOIN events_raw e ON e.user_id = s.user_id AND e.event_time >= s.session_start AND e.event_time <= s.session_end"
                ),
                &[&users, &starts, &ends],
            )
            .context("cannot read the sampled sessions' events from events_raw")?;
        let mut sample: Vec<Vec<Event>> = vec![Vec::new(); sessions.len()];
        for r in &rows {
            let n: i64 = r.get(15);
            sample[n as usize - 1].push(event(r)?);
        }
        Ok((versions, sample))
    }

    /// `(event_id, event_time)` of the accepted events still within the dedupe horizon
    /// at `watermark`.
    pub fn recent_ids(&mut self, watermark: Millis, horizon: Millis) -> Result<Vec<(String, Millis)>> {
        if watermark == Millis::MAX {
            return Ok(Vec::new());
        }
        let since = instant(watermark.saturating_sub(horizon).max(-62_135_596_800_000)); // 0001-01-01 at the earliest
        let rows = self
            .client()
            .query("SELECT event_id, (extract(epoch FROM event_time) * 1000)::bigint FROM events_raw WHERE event_time >= $1", &[&since])
            .context("cannot read recent event ids from events_raw")?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// `ms` milliseconds after (or before) the Unix epoch, as a bind parameter for
/// `timestamptz`: exact, where a float through `to_timestamp` is not for early years.
fn instant(ms: Millis) -> SystemTime {
    let span = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH + span
    } else {
        UNIX_EPOCH - span
    }
}

fn event(r: &postgres::Row) -> Result<Event> {
    let type_name: String = r.get(2);
    let text = |i: usize| Text::new(r.get::<_, &str>(i));
    let optional = |i: usize| r.get::<_, Option<&str>>(i).map(Text::new);
    Ok(Event {
        event_id: text(0),
        event_time: r.get(1),
        event_type: EventType::parse(&type_name).with_context(|| format!("events_raw holds an unknown event_type {type_name:?}"))?,
        user_id: text(3),
        page: text(4),
        product_id: optional(5),
        category: optional(6),
        price_cents: r.get(7),
        quantity: r.get(8),
        order_id: optional(9),
        device: text(10),
        country: text(11),
        referrer: text(12),
        user_agent: text(13),
        ip: text(14),
    })
}
