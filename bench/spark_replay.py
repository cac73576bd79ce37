"""Spark Structured Streaming, local[2], on the file `clickflow bench --compare-spark`
measures: the incumbent doing part of clickflow's work on the same input.

It reads the JSON Lines file as a stream (all of it, then stops: trigger availableNow),
drops malformed lines and duplicates within the watermark, and runs three queries into
Spark's no-op sink: `traffic` (1-minute windows: events by type, distinct users,
revenue), `product_stats` (1-hour windows by product) and `sessions` (30-minute session
windows per user). Nothing is written to PostgreSQL, so Spark does less than clickflow's
file -> PostgreSQL stage. Prints one JSON line: the stage, its seconds (from the first
query's start to the last one's end; the JVM's start-up is not counted) and peak RSS.

Usage: python3 bench/spark_replay.py FILE   (needs `pip install pyspark==3.5.3` and Java 17)
"""
import json
import os
import resource
import shutil
import sys
import tempfile
import time

from pyspark.sql import SparkSession, functions as F, types as T

SCHEMA = T.StructType([
    T.StructField("event_id", T.StringType()),
    T.StructField("event_time", T.TimestampType()),
    T.StructField("event_type", T.StringType()),
    T.StructField("user_id", T.StringType()),
    T.StructField("page", T.StringType()),
    T.StructField("product_id", T.StringType()),
    T.StructField("category", T.StringType()),
    T.StructField("price", T.DecimalType(12, 2)),
    T.StructField("quantity", T.IntegerType()),
])


def main(path: str) -> None:
    lines = sum(1 for _ in open(path, "rb"))
    folder = tempfile.mkdtemp(prefix="spark-bench-")
    os.symlink(os.path.abspath(path), os.path.join(folder, "input.json"))
    spark = (SparkSession.builder.master("local[2]").appName("clickflow-bench")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "4g")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    events = (spark.readStream.schema(SCHEMA).option("mode", "PERMISSIVE").json(folder)
              .where("event_id IS NOT NULL AND event_time IS NOT NULL AND user_id IS NOT NULL")
              .withWatermark("event_time", "60 seconds")
              .dropDuplicatesWithinWatermark(["event_id"]))
    revenue = F.when(F.col("event_type") == "purchase", F.col("price") * F.col("quantity")).otherwise(0)
    counts = [F.sum(F.when(F.col("event_type") == t, 1).otherwise(0)).alias(t) for t in
              ["page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "begin_checkout", "purchase"]]
    traffic = (events.groupBy(F.window("event_time", "1 minute"))
               .agg(F.count("*").alias("events"), *counts, F.approx_count_distinct("user_id").alias("active_users"),
                    F.sum(revenue).alias("revenue")))
    products = (events.where("product_id IS NOT NULL")
                .groupBy(F.window("event_time", "1 hour"), "product_id")
                .agg(*counts, F.sum(revenue).alias("revenue")))
    sessions = (events.groupBy(F.session_window("event_time", "30 minutes"), "user_id")
                .agg(F.count("*").alias("event_count"), *counts, F.sum(revenue).alias("revenue")))
    checkpoints = tempfile.mkdtemp(prefix="spark-bench-checkpoints-")
    started = time.time()
    queries = [df.writeStream.format("noop").outputMode("append").trigger(availableNow=True)
               .option("checkpointLocation", os.path.join(checkpoints, name)).start()
               for name, df in [("traffic", traffic), ("products", products), ("sessions", sessions)]]
    for q in queries:
        q.awaitTermination()
    seconds = time.time() - started
    peak_mib = jvm_peak_mib(spark)
    spark.stop()
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(checkpoints, ignore_errors=True)
    print(json.dumps({"stage": "spark local[2] (3 queries, no-op)", "workers": 2, "events": lines, "seconds": seconds,
                      "peak_mib": peak_mib, "final_rows": 0, "latency_p50_ms": None, "latency_p99_ms": None}))


def jvm_peak_mib(spark) -> float:
    """Peak RSS of the JVM that runs Spark (a child of this Python process) plus this one."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        pid = spark.sparkContext._gateway.proc.pid
        with open(f"/proc/{pid}/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        return own + int(hwm.split()[1]) / 1024
    except (AttributeError, OSError, StopIteration):
        return own


if __name__ == "__main__":
    main(sys.argv[1])
