//! timely's cluster mode (`-n`/`-p`/`-h`) against a real Kafka-protocol broker: two
//! processes of one worker each give the tables of one process of two workers and of the
//! batch reference, with duplicates whose copies are read by different processes; and a
//! cluster killed mid-run resumes after the last commit, exactly once.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use dataflows::pipeline::Settings;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use reference::Tables;
use support::*;

/// Copies of one event sent to two partitions that different processes read.
const TWINS: usize = 5;

/// A 4-partition topic: a simulated stream, then `TWINS` events each sent to partitions 0
/// and 1 (read by workers 0 and 1, so by both processes of `-n 2`), later in event time
/// than everything else so that neither copy is late. Returns the broker, the reference's
/// tables and the number of messages.
fn topic_with_twins(topic: &str, dir: &Path) -> (MockCluster<'static, DefaultProducerContext>, Tables, usize) {
    let cluster = mock_broker(topic, 4);
    let brokers = cluster.bootstrap_servers();
    let faults = ["--seed", "7", "--duplicates", "0.02", "--out-of-order", "0.1", "--malformed", "0.003"];
    let file = dir.join("events.jsonl");
    let file = file.to_str().unwrap();
    clickflow(&[&["produce", "--events", "12000", "--out", file][..], &faults].concat());
    clickflow(&[&["produce", "--events", "12000", "--brokers", &brokers, "--topic", topic][..], &faults].concat());
    let mut lines = read_lines(Path::new(file));
    let last = reference::compute(&lines, 60_000, Settings::default(), now_ms()).events.keys().map(|(_, t)| *t).max().unwrap();
    let mut twins = Vec::new();
    for i in 0..TWINS {
        let line = page_view(&format!("twin-{i}"), last + 1_000 * i as i64, "twin");
        twins.extend([(0, line.clone()), (1, line.clone())]);
        lines.extend([line.clone().into_bytes(), line.into_bytes()]);
    }
    send(&brokers, topic, &twins);
    let expected = reference::compute(&lines, 60_000, Settings::default(), now_ms());
    assert!(expected.events.len() > 11_000 && expected.duplicates >= TWINS as u64, "the reference holds the topic");
    (cluster, expected, lines.len())
}

/// A hostfile naming two free local ports.
fn hostfile(dir: &Path) -> String {
    let listeners: Vec<TcpListener> = (0..2).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let text: String = listeners.iter().map(|l| format!("{}\n", l.local_addr().unwrap())).collect();
    let path = dir.join("hosts");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `process` arguments for process `p` of two.
fn cluster_args<'a>(common: &[&'a str], hosts: &'a str, p: &'a str) -> Vec<&'a str> {
    [&["process", "-n", "2", "-p", p, "-h", hosts, "-w", "1"][..], common].concat()
}

/// Runs the two processes of a cluster to the end; returns the messages each read.
fn run_cluster(common: &[&str], hosts: &str, dir: &Path, label: &str) -> [usize; 2] {
    let mut children = ["0", "1"].map(|p| spawn_clickflow(&cluster_args(common, hosts, p), &[], dir, &format!("{label}-p{p}")));
    let mut read = [0; 2];
    for (p, child) in children.iter_mut().enumerate() {
        let log = stderr_of(dir, &format!("{label}-p{p}"));
        assert!(child.wait().unwrap().success(), "process {p}: {log}");
        let log = stderr_of(dir, &format!("{label}-p{p}"));
        let closing = log.lines().last().unwrap_or_default();
        read[p] = closing.split(" read=").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    }
    read
}

fn assert_equals_reference(db: &TestDb, expected: &Tables, messages: usize, label: &str) {
    let mut client = db.client();
    assert_tables_eq(&actual_tables(&mut client), &expected_tables(expected));
    let (input, duplicates, dead_letters, _, _) = last_progress(&mut client);
    assert_eq!(input as usize, messages, "{label}: every message accounted for");
    assert_eq!(duplicates as u64, expected.duplicates, "{label}: duplicates, those across processes included");
    let events: i64 = client.query_one("SELECT count(*) FROM events_raw", &[]).unwrap().get(0);
    assert_eq!(events + duplicates + dead_letters, input, "{label}: input = events_raw + duplicates + dead letters");
}

#[test]
fn two_processes_of_one_worker_equal_one_process_of_two() {
    let dir = scratch("cluster-equal");
    let (broker, expected, messages) = topic_with_twins("spread", &dir);
    let brokers = broker.bootstrap_servers();

    let single = TestDb::new("cluster_single");
    clickflow(&[
        "process",
        "--brokers",
        &brokers,
        "--topic",
        "spread",
        "--until-idle",
        "2s",
        "-w",
        "2",
        "--postgres",
        &single.url,
        "--quiet",
    ]);
    assert_equals_reference(&single, &expected, messages, "-w 2");

    let db = TestDb::new("cluster_two");
    let hosts = hostfile(&dir);
    let common = ["--brokers", &brokers, "--topic", "spread", "--until-idle", "2s", "--postgres", &db.url, "--quiet"];
    let read = run_cluster(&common, &hosts, &dir, "run");
    assert_equals_reference(&db, &expected, messages, "-n 2");
    assert_eq!(read[0] + read[1], messages, "each message read once: {read:?}");
    assert!(read.iter().all(|r| *r > messages / 4), "each process read its share of the partitions: {read:?}");
}

#[test]
fn a_cluster_killed_mid_run_resumes_exactly_once() {
    let dir = scratch("cluster-kill");
    let (broker, expected, messages) = topic_with_twins("killed", &dir);
    let brokers = broker.bootstrap_servers();
    let db = TestDb::new("cluster_kill");
    let mut client = db.client();

    // Small epochs and slow commits, so that the kill lands mid-run with work committed.
    let hosts = hostfile(&dir);
    let slow = ["--brokers", &brokers, "--topic", "killed", "--epoch-events", "500", "--postgres", &db.url, "--quiet"];
    let env = [("CLICKFLOW_TEST_COMMIT_DELAY_MS", "50".to_owned())];
    let mut first = [
        spawn_clickflow(&cluster_args(&slow, &hosts, "1"), &env, &dir, "first-p1"),
        spawn_clickflow(&cluster_args(&slow, &hosts, "0"), &env, &dir, "first-p0"),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored: i64 = client.query_one("SELECT count(*) FROM events_raw", &[]).map(|r| r.get(0)).unwrap_or(0);
        if stored > 2_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the first run committed nothing: {}", stderr_of(&dir, "first-p0"));
        std::thread::sleep(Duration::from_millis(50));
    }
    for child in &mut first {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let stored: i64 = client.query_one("SELECT count(*) FROM events_raw", &[]).unwrap().get(0);
    assert!(stored < expected.events.len() as i64, "killed before the end: {stored} events stored");

    let hosts = hostfile(&dir);
    let common = ["--brokers", &brokers, "--topic", "killed", "--until-idle", "2s", "--postgres", &db.url, "--quiet"];
    let read = run_cluster(&common, &hosts, &dir, "second");
    assert_equals_reference(&db, &expected, messages, "after the kill");
    assert!(read[0] + read[1] < messages, "the restart read only what was not committed: {read:?} of {messages}");
}

#[test]
fn each_process_holds_the_watermark_of_the_partitions_the_other_reads() {
    const T0: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    let dir = scratch("cluster-watermark");
    let broker = mock_broker("clocks", 2);
    let brokers = broker.bootstrap_servers();
    // Ten minutes of event time on each partition: partition 0 is read by process 0,
    // partition 1 by process 1.
    let mut records: Vec<(i32, String)> = Vec::new();
    for i in 0..600 {
        records.push((0, page_view(&format!("a{i}"), T0 + i * 1000, "left")));
        records.push((1, page_view(&format!("b{i}"), T0 + i * 1000, "right")));
    }
    send(&brokers, "clocks", &records);

    let db = TestDb::new("cluster_clocks");
    let hosts = hostfile(&dir);
    let common = ["--brokers", &brokers, "--topic", "clocks", "--until-idle", "15s", "--postgres", &db.url, "--quiet"];
    let mut children = ["0", "1"].map(|p| spawn_clickflow(&cluster_args(&common, &hosts, p), &[], &dir, &format!("p{p}")));
    // W = T0 + 599 s − 60 s in both processes, so the eight traffic windows ending by then
    // are final while they run: process 1's reports hold W only as far as it knows
    // partition 0, and the other way round.
    let mut client = db.client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = client.query_one("SELECT count(*) FROM traffic WHERE is_final", &[]).map(|r| r.get(0)).unwrap_or(0);
        if n >= 8 {
            assert_eq!(n, 8, "windows after W stay open");
            break;
        }
        assert!(Instant::now() < deadline, "no window became final: {}", stderr_of(&dir, "p0"));
        std::thread::sleep(Duration::from_millis(200));
    }
    // An event before W on partition 1 is late in process 1, which knows partition 0's
    // progress only through the dataflow.
    send(&brokers, "clocks", &[(1, page_view("too-late", T0 + 60_000, "right"))]);
    for (p, child) in children.iter_mut().enumerate() {
        assert!(child.wait().unwrap().success(), "process {p}: {}", stderr_of(&dir, &format!("p{p}")));
    }
    let late: Vec<String> =
        client.query("SELECT source FROM dead_letters WHERE reason = 'late'", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(late[0].starts_with("kafka:clocks/1@"), "{late:?}");
    let events: i64 = client.query_one("SELECT count(*) FROM events_raw", &[]).unwrap().get(0);
    assert_eq!(events, 1200);
}

#[test]
fn a_signal_to_one_process_stops_the_cluster_and_a_partition_behind_is_not_late() {
    const T0: i64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z
    let dir = scratch("cluster-signal");
    let broker = mock_broker("behind", 2);
    let brokers = broker.bootstrap_servers();
    // Partition 0 (process 0) is an hour ahead of partition 1 (process 1): process 0 must
    // hold W for partition 1 until it hears of it, or partition 1 would all be late.
    let mut records: Vec<(i32, String)> =
        (0..300).map(|i| (0, page_view(&format!("ahead{i}"), T0 + 3_600_000 + i * 2000, "fast"))).collect();
    records.extend((0..300).map(|i| (1, page_view(&format!("behind{i}"), T0 + i * 2000, "slow"))));
    send(&brokers, "behind", &records);

    let db = TestDb::new("cluster_signal");
    let mut client = db.client();
    let hosts = hostfile(&dir);
    let live = ["--brokers", &brokers, "--topic", "behind", "--postgres", &db.url, "--quiet"];
    let mut children = ["0", "1"].map(|p| spawn_clickflow(&cluster_args(&live, &hosts, p), &[], &dir, &format!("live-p{p}")));
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.query_one("SELECT count(*) FROM events_raw", &[]).map(|r| r.get::<_, i64>(0)).unwrap_or(0) < 600 {
        assert!(Instant::now() < deadline, "the events were not stored: {}", stderr_of(&dir, "live-p0"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM to process 1 alone: both commit what was read and exit 0.
    let pid = children[1].id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    for (p, child) in children.iter_mut().enumerate() {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "process {p} did not stop: {}", stderr_of(&dir, &format!("live-p{p}")));
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "process {p}: {status}: {}", stderr_of(&dir, &format!("live-p{p}")));
    }
    let open: i64 = client.query_one("SELECT count(*) FROM sessions WHERE NOT is_final", &[]).unwrap().get(0);
    assert_eq!(open, 2, "stopping does not pretend open sessions are final");
    assert_eq!(client.query_one("SELECT count(*) FROM dead_letters", &[]).unwrap().get::<_, i64>(0), 0, "nothing late");

    // Started again to the end: every session final, still nothing late.
    let hosts = hostfile(&dir);
    let common = ["--brokers", &brokers, "--topic", "behind", "--until-idle", "2s", "--postgres", &db.url, "--quiet"];
    let read = run_cluster(&common, &hosts, &dir, "end");
    assert_eq!(read, [0, 0], "everything was committed by the stop");
    let r = client
        .query_one(
            "SELECT (SELECT count(*) FROM events_raw), (SELECT count(*) FROM sessions WHERE is_final), (SELECT count(*) FROM dead_letters)",
            &[],
        )
        .unwrap();
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)), (600, 2, 0));
}
