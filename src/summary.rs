//! The short summary `clickflow process` prints at the end: rows per table and the
//! headline figures, read back from PostgreSQL.

use anyhow::{Context, Result};
use postgres::{Client, NoTls};

/// Prints one line per table and the totals a shop owner would look at first.
pub fn print(url: &str) -> Result<()> {
    let mut client = Client::connect(url, NoTls).context("cannot reconnect to PostgreSQL for the summary")?;
    let row = client.query_one(
        "SELECT (SELECT count(*) FROM events_raw),
                (SELECT count(*) FROM sessions), (SELECT count(*) FROM sessions WHERE NOT is_final),
                (SELECT count(*) FROM traffic), (SELECT count(*) FROM product_stats),
                (SELECT count(*) FROM funnel), (SELECT count(*) FROM conversion),
                (SELECT count(*) FROM dead_letters),
                (SELECT coalesce(sum(revenue), 0)::text FROM sessions),
                (SELECT coalesce(avg(converted::int), 0)::float8 FROM sessions),
                (SELECT coalesce(avg(bounced::int), 0)::float8 FROM sessions),
                (SELECT coalesce(sum(cart_abandoned::int)::float8 / nullif(sum((cart_adds > 0)::int), 0), 0) FROM sessions)",
        &[],
    )?;
    let n = |i: usize| row.get::<_, i64>(i);
    println!("events_raw     {:>10} events", n(0));
    println!("sessions       {:>10} rows ({} still open)", n(1), n(2));
    println!("traffic        {:>10} windows", n(3));
    println!("product_stats  {:>10} rows", n(4));
    println!("funnel         {:>10} windows", n(5));
    println!("conversion     {:>10} rows", n(6));
    println!("dead_letters   {:>10} messages", n(7));
    println!(
        "revenue {} | session conversion {:.1}% | bounce {:.1}% | cart abandonment {:.1}%",
        row.get::<_, String>(8),
        100.0 * row.get::<_, f64>(9),
        100.0 * row.get::<_, f64>(10),
        100.0 * row.get::<_, f64>(11)
    );
    let by_reason = client.query("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason", &[])?;
    if !by_reason.is_empty() {
        let parts: Vec<String> = by_reason.iter().map(|r| format!("{} {}", r.get::<_, String>(0), r.get::<_, i64>(1))).collect();
        println!("dead letters by reason: {}", parts.join(", "));
    }
    Ok(())
}
