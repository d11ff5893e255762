//! The outbox on PostgreSQL: what writing intents in the caller's transaction
//! costs, and how fast they go through the relay, against writing each effect
//! directly after COMMIT.
//!
//! ```text
//! cargo run --release -p airlock-bench --bin outbox [rounds]
//! ```
//!
//! Reads `AIRLOCK_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), works in a schema of its own
//! and drops it. Variants run interleaved, round after round, and the median
//! of the rounds is reported, so load from other processes hits all alike.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use airlock::InlineExecutor;
use airlock::sqlx::{Relay, TxError, TxScope};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

static RUNS: AtomicU64 = AtomicU64::new(0);

/// The effect: counts its runs.
#[airlock::task(name = "bench.notify")]
fn notify(order_id: i64, n: u32) {
    let _ = (order_id, n);
    RUNS.fetch_add(1, Ordering::Relaxed);
}

/// Transactions per measurement.
const TXS: usize = 200;
/// Transactions per measurement of the direct variant.
const DIRECT_TXS: usize = 20;

/// One transaction: an order row, then `n` effects in the outbox.
async fn outbox_tx(pool: &PgPool, scope: &TxScope<sqlx::Postgres>, id: i64, n: u32) {
    scope
        .run(pool, |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO orders (id) VALUES ($1)")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                for i in 0..n {
                    airlock::enqueue(Notify { order_id: id, n: i })?;
                }
                Ok::<_, TxError>(())
            })
        })
        .await
        .unwrap();
}

/// The same order without airlock, then each effect written on its own
/// after the COMMIT: one INSERT per effect.
async fn direct_tx(pool: &PgPool, id: i64, n: u32) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id) VALUES ($1)")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for i in 0..n {
        sqlx::query("INSERT INTO effects (order_id, n, payload) VALUES ($1, $2, $3::json)")
            .bind(id)
            .bind(i64::from(i))
            .bind(format!(r#"{{"order_id":{id},"n":{i}}}"#))
            .execute(pool)
            .await
            .unwrap();
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(7, |arg| arg.parse().expect("rounds: a number"));
    let url = std::env::var("AIRLOCK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("airlock_bench_{}", std::process::id());
    let admin = PgPool::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL is not reachable at {url}: {error}"));
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let options = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    airlock::sqlx::migrate(&pool).await.unwrap();
    for table in [
        "CREATE TABLE orders (id BIGINT PRIMARY KEY)",
        "CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, order_id BIGINT, n BIGINT, payload JSON)",
    ] {
        sqlx::query(table).execute(&pool).await.unwrap();
    }

    let outbox = TxScope::new().outbox();
    let relay = Relay::new(pool.clone(), InlineExecutor).batch_size(500);
    let sizes = [0_u32, 1, 10, 100];
    let mut cost: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut direct: Vec<Vec<f64>> = vec![Vec::new(); sizes.len()];
    let mut throughput_outbox = Vec::new();
    let mut throughput_direct = Vec::new();
    let mut next_id = 0_i64;
    // Round 0 warms up and is not counted.
    for round in 0..=rounds {
        // The cost per transaction: one transaction of each size in turn,
        // so a burst of load from elsewhere hits every size alike.
        let mut total = vec![0.0; sizes.len()];
        for i in 0..TXS {
            for k in 0..sizes.len() {
                let k = (k + i) % sizes.len();
                next_id += 1;
                let start = Instant::now();
                outbox_tx(&pool, &outbox, next_id, sizes[k]).await;
                total[k] += start.elapsed().as_secs_f64() * 1e6;
            }
        }
        let before = RUNS.load(Ordering::Relaxed);
        relay.drain().await.unwrap();
        let expected: u64 = sizes.iter().map(|n| u64::from(*n) * TXS as u64).sum();
        assert_eq!(
            RUNS.load(Ordering::Relaxed) - before,
            expected,
            "the relay missed intents"
        );
        // Direct after COMMIT: one commit per effect, so fewer transactions.
        for (k, &n) in sizes.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..DIRECT_TXS {
                next_id += 1;
                direct_tx(&pool, next_id, n).await;
            }
            let us = start.elapsed().as_secs_f64() * 1e6 / DIRECT_TXS as f64;
            if round > 0 {
                direct[k].push(us);
                cost[k].push(total[k] / TXS as f64);
            }
        }
        // Throughput at 10 intents per transaction, end to end: written in
        // the transaction, then dispatched by the relay.
        let start = Instant::now();
        for _ in 0..TXS {
            next_id += 1;
            outbox_tx(&pool, &outbox, next_id, 10).await;
        }
        relay.drain().await.unwrap();
        let outbox_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..DIRECT_TXS {
            next_id += 1;
            direct_tx(&pool, next_id, 10).await;
        }
        let direct_s = start.elapsed().as_secs_f64();
        if round > 0 {
            throughput_outbox.push(10.0 * TXS as f64 / outbox_s);
            throughput_direct.push(10.0 * DIRECT_TXS as f64 / direct_s);
        }
    }

    println!(
        "PostgreSQL outbox, {rounds} rounds of {TXS} transactions per size, sizes interleaved \
         ({DIRECT_TXS} per size direct), medians\n"
    );
    println!(
        "| intents per transaction | outbox: µs per tx | added by the intents | \
         direct INSERT per effect after COMMIT: µs per tx | added |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let base = median(cost[0].clone());
    let direct_base = median(direct[0].clone());
    for (k, n) in sizes.iter().enumerate() {
        let (us, direct_us) = (median(cost[k].clone()), median(direct[k].clone()));
        println!(
            "| {n} | {us:.0} | {:+.0} µs | {direct_us:.0} | {:+.0} µs |",
            us - base,
            direct_us - direct_base
        );
    }
    let one = median(cost[1].clone());
    let hundred = median(cost[3].clone());
    println!(
        "\n100 intents cost {:.2}x one intent per transaction (outbox)",
        hundred / one
    );
    println!(
        "intents/s at 10 per transaction: outbox (write in tx + relay dispatch) {:.0}, \
         direct INSERT per effect after COMMIT {:.0}",
        median(throughput_outbox),
        median(throughput_direct)
    );

    pool.close().await;
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}
