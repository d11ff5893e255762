//! Queue executors and workers against the engines' own clients and
//! workers, in one run on one machine (Redis and Postgres must be up):
//!
//! ```text
//! cargo run --release -p airlock-bench-queues [-- ROUNDS]
//! ```
//!
//! 1. Enqueue: 1,000 intents flushed through `RedisExecutor` /
//!    `GraphileExecutor` (one scope, one flush) against 1,000 single pushes
//!    with the engine's own client (`TaskSink::push`, `WorkerUtils::add_raw_job`),
//!    interleaved, ROUNDS times (default 5); medians.
//! 2. Workers: 2,000 jobs of an empty task drained by airlock's worker
//!    against the engine's own worker running the same empty handler; jobs/s,
//!    interleaved, ROUNDS times; medians.
//!
//! Reads `AIRLOCK_TEST_REDIS_URL` and `AIRLOCK_TEST_POSTGRES_URL` (the test
//! defaults); uses its own queues and graphile schema and removes them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use airlock::apalis::{RedisExecutor, Worker as ApalisWorker};
use airlock::graphile::{GraphileExecutor, Worker as GraphileWorker};
use airlock::{Run, Scope, Task};
use apalis::prelude::{BoxDynError, TaskSink, WorkerBuilder};
use apalis_redis::{ConnectionManager, RedisStorage};
use graphile_worker::{IntoTaskHandlerResult, JobSpec, TaskHandler, WorkerContext, WorkerUtils};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

const INTENTS: usize = 1_000;
const JOBS: usize = 2_000;
/// graphile's poll interval in the worker runs, the same for both workers.
const POLL: Duration = Duration::from_millis(10);

static DONE: AtomicUsize = AtomicUsize::new(0);

/// The empty task both workers run.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Empty {
    n: u64,
}

impl Task for Empty {
    const NAME: &'static str = "bench_empty";
    fn run(self) -> Run {
        DONE.fetch_add(1, Ordering::Relaxed);
        Run::ok()
    }
}

airlock::__private::inventory::submit!(airlock::Registration::new::<Empty>(
    "airlock_bench_queues::Empty",
    file!(),
    line!()
));

/// graphile's own handler for the same job.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NativeEmpty {
    n: u64,
}

impl TaskHandler for NativeEmpty {
    const IDENTIFIER: &'static str = "bench_empty";
    async fn run(self, _ctx: WorkerContext) -> impl IntoTaskHandlerResult {
        DONE.fetch_add(1, Ordering::Relaxed);
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("airlock_bench_{what}_{}_{nanos}", std::process::id())
}

async fn flush_through<E: airlock::Executor + Clone>(executor: &E) -> Duration {
    let start = Instant::now();
    Scope::new()
        .executor(executor.clone())
        .run_async(async {
            for n in 0..INTENTS as u64 {
                airlock::enqueue(Empty { n })?;
            }
            Ok::<(), airlock::Error>(())
        })
        .await
        .expect("the flush succeeds");
    start.elapsed()
}

async fn apalis_enqueue(conn: &ConnectionManager, rounds: usize) -> (Duration, Duration) {
    let queue = unique("enqueue");
    let executor = RedisExecutor::new(conn.clone()).default_queue(queue.clone());
    let mut storage: RedisStorage<Empty> =
        RedisStorage::new(conn.clone()).with_config(apalis_redis::Config::default().queue(&queue));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(flush_through(&executor).await);
        let start = Instant::now();
        for n in 0..INTENTS as u64 {
            storage.push(Empty { n }).await.expect("apalis push");
        }
        theirs.push(start.elapsed());
    }
    clear_redis(conn, &queue).await;
    (median(ours), median(theirs))
}

async fn graphile_enqueue(pool: &PgPool, schema: &str, rounds: usize) -> (Duration, Duration) {
    let executor = GraphileExecutor::new(pool.clone()).schema(schema);
    let utils = WorkerUtils::new(pool.clone(), schema);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(flush_through(&executor).await);
        let start = Instant::now();
        for n in 0..INTENTS as u64 {
            utils
                .add_raw_job(
                    "bench_empty",
                    serde_json::json!({ "n": n }),
                    JobSpec::default(),
                )
                .await
                .expect("graphile add_raw_job");
        }
        theirs.push(start.elapsed());
    }
    truncate_jobs(pool, schema).await;
    (median(ours), median(theirs))
}

async fn clear_redis(conn: &ConnectionManager, queue: &str) {
    let mut conn = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{queue}*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("DEL");
    }
}

async fn truncate_jobs(pool: &PgPool, schema: &str) {
    let sql = format!("DELETE FROM \"{schema}\"._private_jobs");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .expect("delete jobs");
}

async fn wait_for(count: usize) {
    while DONE.load(Ordering::Relaxed) < count {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Jobs per second for `JOBS` jobs drained by `run` (started after they are
/// queued; `stop` ends it).
async fn drain<F, W>(run: F) -> f64
where
    F: FnOnce(tokio::sync::oneshot::Receiver<()>) -> W,
    W: Future<Output = ()>,
{
    DONE.store(0, Ordering::Relaxed);
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let start = Instant::now();
    let timing = async {
        wait_for(JOBS).await;
        let elapsed = start.elapsed();
        let _ = stop.send(());
        elapsed
    };
    let ((), elapsed) = tokio::join!(run(stopped), timing);
    JOBS as f64 / elapsed.as_secs_f64()
}

async fn apalis_workers(conn: &ConnectionManager, rounds: usize) -> (f64, f64) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let queue = unique("ours");
        let executor = RedisExecutor::new(conn.clone()).default_queue(queue.clone());
        for _ in 0..JOBS / INTENTS {
            flush_through(&executor).await;
        }
        let worker = ApalisWorker::new(conn.clone())
            .queue(queue.clone())
            .config(apalis_redis::Config::default().batch_size(100));
        ours.push(
            drain(|stopped| async move {
                worker
                    .run_until(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("worker");
            })
            .await,
        );
        clear_redis(conn, &queue).await;

        let queue = unique("theirs");
        let mut storage: RedisStorage<Empty> = RedisStorage::new(conn.clone()).with_config(
            apalis_redis::Config::default()
                .queue(&queue)
                .batch_size(100),
        );
        for n in 0..JOBS as u64 {
            storage.push(Empty { n }).await.expect("push");
        }
        theirs.push(
            drain(|stopped| async move {
                let worker = WorkerBuilder::new(unique("native")).backend(storage).build(
                    |job: Empty| async move {
                        let _ = job.run().wait();
                        Ok::<(), BoxDynError>(())
                    },
                );
                worker
                    .run_until(async move {
                        let _ = stopped.await;
                        Ok::<(), std::io::Error>(())
                    })
                    .await
                    .expect("native worker");
            })
            .await,
        );
        clear_redis(conn, &queue).await;
    }
    (median_f(ours), median_f(theirs))
}

async fn graphile_workers(pool: &PgPool, schema: &str, rounds: usize) -> (f64, f64) {
    let executor = GraphileExecutor::new(pool.clone()).schema(schema);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..JOBS / INTENTS {
            flush_through(&executor).await;
        }
        let worker = GraphileWorker::new(pool.clone())
            .schema(schema)
            .task::<Empty>()
            .concurrency(4)
            .options(|options| options.poll_interval(POLL));
        ours.push(
            drain(|stopped| async move {
                worker
                    .run_until(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("worker");
            })
            .await,
        );
        truncate_jobs(pool, schema).await;

        for _ in 0..JOBS / INTENTS {
            flush_through(&executor).await;
        }
        theirs.push(
            drain(|stopped| async move {
                let worker = graphile_worker::WorkerOptions::default()
                    .pg_pool(pool.clone())
                    .schema(schema)
                    .concurrency(4)
                    .poll_interval(POLL)
                    .define_job::<NativeEmpty>()
                    .listen_os_shutdown_signals(false)
                    .shutdown_signal(async move {
                        let _ = stopped.await;
                    })
                    .init()
                    .await
                    .expect("graphile init");
                worker.run().await.expect("native worker");
            })
            .await,
        );
        truncate_jobs(pool, schema).await;
    }
    (median_f(ours), median_f(theirs))
}

fn median_f(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let redis_url = std::env::var("AIRLOCK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let pg_url = std::env::var("AIRLOCK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let conn = apalis_redis::connect(redis_url.as_str())
        .await
        .expect("Redis is up");
    let pool = PgPool::connect(&pg_url).await.expect("Postgres is up");
    let schema = unique("graphile");
    WorkerUtils::new(pool.clone(), schema.as_str())
        .migrate()
        .await
        .expect("graphile migrates");

    println!("{INTENTS} intents, medians of {rounds} interleaved rounds");
    let (ours, theirs) = apalis_enqueue(&conn, rounds).await;
    println!(
        "apalis-redis enqueue: flush {:8.2} ms | {INTENTS} x push {:8.2} ms | {:5.1}x",
        ms(ours),
        ms(theirs),
        ms(theirs) / ms(ours)
    );
    let (ours, theirs) = graphile_enqueue(&pool, &schema, rounds).await;
    println!(
        "graphile enqueue:     flush {:8.2} ms | {INTENTS} x add_raw_job {:8.2} ms | {:5.1}x",
        ms(ours),
        ms(theirs),
        ms(theirs) / ms(ours)
    );
    let worker_rounds = rounds;
    println!("{JOBS} empty jobs per worker run, medians of {worker_rounds} interleaved rounds");
    let (ours, theirs) = apalis_workers(&conn, worker_rounds).await;
    println!(
        "apalis-redis worker:  airlock {ours:8.0} jobs/s | apalis {theirs:8.0} jobs/s | {:5.2}",
        ours / theirs
    );
    let (ours, theirs) = graphile_workers(&pool, &schema, worker_rounds).await;
    println!(
        "graphile worker:      airlock {ours:8.0} jobs/s | graphile {theirs:8.0} jobs/s | {:5.2}",
        ours / theirs
    );
    let sql = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .expect("drop schema");
}
