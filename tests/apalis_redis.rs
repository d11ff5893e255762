//! apalis on Redis: the executor pushes flushes as apalis jobs, the worker
//! runs them as registered tasks in their own scopes. Real Redis
//! (`AIRLOCK_TEST_REDIS_URL`), one unique queue per test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use airlock::apalis::{Envelope, RedisExecutor, Worker};
use airlock::{DispatchOptions, Intent, PortablePolicy, Scope};
use airlock_tests::services::{redis_url, unique};
use apalis_redis::{ConnectionLike, ConnectionManager};
use redis::AsyncCommands;

#[path = "queue_tasks.rs"]
mod queue_tasks;
use queue_tasks::{AlwaysFails, Note, NoteThenFollowUp, note_run, runs};

/// Panics.
#[airlock::task]
fn panics(run: String) {
    note_run(&run, "panic");
    panic!("kaboom in {run}");
}

/// The effect a reprocessing must not have.
#[airlock::task]
fn send_email(run: String) {
    note_run(&run, "email");
}

/// Reprocesses an order: emails (blockable) and writes an audit note.
#[airlock::task]
fn reprocess(run: String) -> airlock::Result<()> {
    note_run(&run, "reprocess");
    airlock::enqueue(SendEmail { run: run.clone() })?;
    airlock::enqueue(Note {
        run,
        label: "audit".into(),
    })
}

async fn connect(url: &str) -> ConnectionManager {
    apalis_redis::connect(url)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to Redis at {url}: {error}"))
}

/// Polls until `done` or panics after `seconds`.
async fn eventually(seconds: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `worker` while `body` runs, then stops it and waits for it.
async fn with_worker<F: Future<Output = ()>>(worker: Worker, body: F) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = worker.run_until(async move {
        let _ = stopped.await;
    });
    let body = async move {
        body.await;
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(worker, body);
    result.expect("the worker starts");
}

async fn envelopes(conn: &mut ConnectionManager, queue: &str) -> Vec<Envelope> {
    let jobs: Vec<Vec<u8>> = conn.hvals(format!("{queue}:data")).await.unwrap();
    jobs.iter()
        .map(|job| serde_json::from_slice(job).unwrap())
        .collect()
}

async fn job_result(conn: &mut ConnectionManager, queue: &str, id: &str) -> String {
    conn.hget(format!("{queue}:meta:{id}"), "result")
        .await
        .unwrap()
}

/// A connection that counts its round trips.
#[derive(Clone)]
struct Counting {
    inner: ConnectionManager,
    trips: Arc<AtomicUsize>,
}

impl ConnectionLike for Counting {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        self.trips.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.trips.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

#[tokio::test]
async fn a_flush_of_1000_intents_is_one_round_trip_and_lands_1000_jobs_with_their_options() {
    let Some(url) = redis_url() else { return };
    let mut conn = connect(&url).await;
    let queue = unique("flush");
    let trips = Arc::new(AtomicUsize::new(0));
    let counting = Counting {
        inner: conn.clone(),
        trips: trips.clone(),
    };
    let executor = RedisExecutor::new(counting).default_queue(queue.clone());
    // Loads the batch script, so the measured flush finds it cached.
    let warm_up = unique("warm_up");
    executor
        .push(vec![
            Intent::new(Note {
                run: warm_up.clone(),
                label: "x".into(),
            })
            .with_options(DispatchOptions::new().queue(warm_up)),
        ])
        .await
        .unwrap();

    let run = unique("run");
    let mut scope = Scope::new().executor(executor).enter().unwrap();
    for i in 0..1000 {
        let options = DispatchOptions::new().max_attempts(7);
        let options = if i % 2 == 0 {
            options.delay(Duration::from_secs(3600))
        } else {
            options
        };
        let note = Note {
            run: run.clone(),
            label: i.to_string(),
        };
        airlock::enqueue(Intent::new(note).with_options(options)).unwrap();
    }
    scope.exit().unwrap();
    trips.store(0, Ordering::SeqCst);
    let report = scope.flush_async().await.unwrap();
    assert_eq!(
        trips.load(Ordering::SeqCst),
        1,
        "one round trip for the flush"
    );

    assert_eq!(report.dispatched_count(), 1000);
    assert_eq!(report.receipts().len(), 1000);
    let landed: usize = conn.hlen(format!("{queue}:data")).await.unwrap();
    assert_eq!(landed, 1000);
    // apalis-redis schedules every job by its `run_at` (now, without a delay).
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3500;
    let scheduled = format!("{queue}:scheduled");
    let delayed: usize = conn.zcount(&scheduled, in_an_hour, "+inf").await.unwrap();
    let ready: usize = conn.zcount(&scheduled, "-inf", in_an_hour).await.unwrap();
    assert_eq!((delayed, ready), (500, 500));
    // In flush order: the second intent is the first one not delayed.
    let first_ready: Vec<String> = conn.zrange(&scheduled, 0, 0).await.unwrap();
    assert_eq!(first_ready, [report.receipts()[1].job_id.clone()]);
    for receipt in &report.receipts()[..3] {
        assert_eq!(
            (receipt.task, receipt.queue.as_str()),
            ("note", queue.as_str())
        );
        let max: u32 = conn
            .hget(format!("{queue}:meta:{}", receipt.job_id), "max_attempts")
            .await
            .unwrap();
        assert_eq!(max, 7);
    }
    let mut labels: Vec<usize> = envelopes(&mut conn, &queue)
        .await
        .iter()
        .map(|envelope| {
            assert_eq!(envelope.task, "note");
            assert_eq!(envelope.options.max_attempts, Some(7));
            envelope.payload["label"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    labels.sort_unstable();
    assert_eq!(labels, (0..1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn intents_go_to_their_own_queues_one_push_each() {
    let Some(url) = redis_url() else { return };
    let mut conn = connect(&url).await;
    let (mail, other) = (unique("mail"), unique("other"));
    let run = unique("run");
    let executor = RedisExecutor::new(conn.clone()).default_queue(other.clone());
    let note = |label: &str| Note {
        run: run.clone(),
        label: label.into(),
    };
    let receipts = executor
        .push(vec![
            Intent::new(note("a")).with_options(DispatchOptions::new().queue(mail.clone())),
            Intent::new(note("b")),
            Intent::new(note("c")).with_options(DispatchOptions::new().queue(mail.clone())),
        ])
        .await
        .unwrap();
    let queues: Vec<_> = receipts.iter().map(|r| r.queue.as_str()).collect();
    assert_eq!(queues, [mail.as_str(), mail.as_str(), other.as_str()]);
    let mail_jobs: Vec<String> = conn
        .zrange(format!("{mail}:scheduled"), 0, -1)
        .await
        .unwrap();
    assert_eq!(
        mail_jobs,
        [receipts[0].job_id.clone(), receipts[1].job_id.clone()]
    );
    let other_jobs: usize = conn.zcard(format!("{other}:scheduled")).await.unwrap();
    assert_eq!(other_jobs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_each_job_once_dispatches_follow_ups_and_retries_up_to_max_attempts() {
    let Some(url) = redis_url() else { return };
    let mut conn = connect(&url).await;
    let queue = unique("e2e");
    let run = unique("run");
    let executor = RedisExecutor::new(conn.clone()).default_queue(queue.clone());

    let mut scope = Scope::new().executor(executor.clone()).enter().unwrap();
    for label in ["one", "two", "three"] {
        airlock::enqueue(Note {
            run: run.clone(),
            label: label.into(),
        })
        .unwrap();
    }
    airlock::enqueue(NoteThenFollowUp {
        run: run.clone(),
        label: "parent".into(),
    })
    .unwrap();
    let failing = AlwaysFails {
        run: format!("{run}-failing"),
    };
    airlock::enqueue(Intent::new(failing).with_options(DispatchOptions::new().max_attempts(2)))
        .unwrap();
    scope.exit().unwrap();
    let report = scope.flush_async().await.unwrap();
    let failing_id = report.receipts()[4].job_id.clone();

    let worker = Worker::new(conn.clone())
        .queue(queue.clone())
        .executor(executor);
    let failing_run = format!("{run}-failing");
    with_worker(worker, async {
        eventually(20, "the jobs and the follow-up", || runs(&run).len() == 5).await;
        eventually(20, "two attempts of the failing job", || {
            runs(&failing_run).len() >= 2
        })
        .await;
        let dead = format!("{queue}:dead");
        let mut conn = conn.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !conn
            .sismember::<_, _, bool>(&dead, &failing_id)
            .await
            .unwrap()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the failed job is recorded dead"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // No third attempt comes.
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;

    let mut ran = runs(&run);
    ran.sort();
    assert_eq!(ran, ["one", "parent", "parent+follow-up", "three", "two"]);
    assert_eq!(runs(&failing_run), ["attempt", "attempt"]);
    let result = job_result(&mut conn, &queue, &failing_id).await;
    assert!(result.contains("gave up after attempt 2 of 2"), "{result}");
    assert!(result.contains("the mail server said no"), "{result}");
    assert!(result.contains("always_fails"), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jobs_fail_permanently_with_a_clear_error_and_the_worker_goes_on() {
    let Some(url) = redis_url() else { return };
    let mut conn = connect(&url).await;
    let queue = unique("bad");
    let run = unique("run");
    let config = apalis_redis::Config::default().queue(&queue);
    let raw = |bytes: Vec<u8>, id: &str| {
        apalis::prelude::TaskBuilder::new(bytes)
            .task_id(apalis::prelude::TaskId::from_string(id.to_owned()))
            .build()
    };
    let envelope = |task: &str, payload: serde_json::Value| {
        serde_json::to_vec(&serde_json::json!({"task": task, "payload": payload})).unwrap()
    };
    let huge = "x".repeat(10 * 1024 * 1024);
    let jobs = vec![
        raw(envelope("no_such_task", serde_json::json!({})), "unknown"),
        raw(
            envelope("note", serde_json::json!({"run": 5, "label": "x"})),
            "wrong-type",
        ),
        raw(b"this is not json".to_vec(), "not-json"),
        raw(
            envelope("note", serde_json::json!({"run": run, "label": huge})),
            "huge",
        ),
        raw(
            envelope("panics", serde_json::json!({"run": run})),
            "panics",
        ),
        raw(
            envelope("note", serde_json::json!({"run": run, "label": "good"})),
            "good",
        ),
    ];
    apalis_redis::queries::push_tasks(&mut conn, &config, &jobs)
        .await
        .unwrap();

    let worker = Worker::new(conn.clone()).queue(queue.clone());
    let dead = format!("{queue}:dead");
    let mut watch = conn.clone();
    with_worker(worker, async {
        eventually(20, "the good job", || {
            runs(&run).contains(&"good".to_owned())
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let count: usize = watch.scard(&dead).await.unwrap();
            if count == 4 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "4 dead jobs, found {count}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    let expect = [
        (
            "unknown",
            vec!["no task named `no_such_task`", "known tasks:"],
        ),
        (
            "wrong-type",
            vec![
                "payload for task `note` does not match",
                "invalid type: integer `5`",
            ],
        ),
        ("not-json", vec!["not an airlock envelope", "expected"]),
        ("huge", vec!["task `note`", "over this worker's limit"]),
    ];
    for (id, phrases) in expect {
        assert!(
            conn.sismember::<_, _, bool>(&dead, id).await.unwrap(),
            "{id} is dead"
        );
        let result = job_result(&mut conn, &queue, id).await;
        for phrase in phrases {
            assert!(result.contains(phrase), "{id}: {result:?} lacks {phrase:?}");
        }
    }
    // A panic is a failure (retried), never a crash of the worker.
    let result = job_result(&mut conn, &queue, "panics").await;
    assert!(
        result.contains("task `panics` panicked: kaboom"),
        "{result}"
    );
    assert!(runs(&run).contains(&"panic".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portable_block_tasks_policy_travels_with_the_job_and_its_follow_ups() {
    let Some(url) = redis_url() else { return };
    let mut conn = connect(&url).await;
    let queue = unique("policy");
    let run = unique("run");
    let executor = RedisExecutor::new(conn.clone()).default_queue(queue.clone());
    let no_email = PortablePolicy::block_tasks(["send_email"]);

    Scope::new()
        .policy(no_email.clone())
        .executor(executor.clone())
        .run_async(async { airlock::enqueue(Reprocess { run: run.clone() }) })
        .await
        .unwrap();
    let queued = envelopes(&mut conn, &queue).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].policy, Some(no_email.clone()));

    let worker = Worker::new(conn.clone())
        .queue(queue.clone())
        .executor(executor);
    with_worker(worker, async {
        eventually(20, "the audit note", || {
            runs(&run).contains(&"audit".to_owned())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    })
    .await;

    let mut ran = runs(&run);
    ran.sort();
    assert_eq!(ran, ["audit", "reprocess"]);
    let queued = envelopes(&mut conn, &queue).await;
    let tasks: Vec<_> = queued.iter().map(|e| e.task.as_str()).collect();
    assert!(!tasks.contains(&"send_email"), "{tasks:?}");
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    // The follow-up carries the policy on.
    let audit = queued.iter().find(|e| e.task == "note").unwrap();
    assert_eq!(audit.policy, Some(no_email));
}

#[test]
fn the_worker_reports_what_it_does_not_handle() {
    let Some(url) = redis_url() else { return };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = runtime.block_on(connect(&url));
    let (startup, warnings) = logged(|| {
        Worker::new(conn.clone())
            .tasks(["note", "not_registered_anywhere"])
            .check()
            .unwrap()
    });
    assert_eq!(startup.handled, ["note"]);
    assert!(startup.unhandled.contains(&"send_email"), "{startup:?}");
    assert!(!startup.unhandled.contains(&"note"));
    assert_eq!(startup.unknown, ["not_registered_anywhere"]);
    // Both are said at start-up, in the log.
    assert!(
        warnings.contains("registered tasks that this worker does not handle"),
        "{warnings}"
    );
    assert!(
        warnings.contains("no crate in this binary registers"),
        "{warnings}"
    );

    // A worker that handles every registered task has nothing to warn about.
    let (startup, warnings) = logged(|| Worker::new(conn).check().unwrap());
    assert!(startup.unhandled.is_empty() && startup.unknown.is_empty());
    assert!(warnings.is_empty(), "{warnings}");
}

/// What `f` logs at `WARN` and above, as text.
fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    #[derive(Clone, Default)]
    struct Text(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Text {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let text = Text::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer({
            let text = text.clone();
            move || text.clone()
        })
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let logged = String::from_utf8(text.0.lock().unwrap().clone()).unwrap();
    (out, logged)
}

/// A redis-server of this test's own, on a free port, so that stopping it
/// disturbs nobody else. Killed (by its pid) on drop.
struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "this test starts its own redis-server to stop it mid-flush, and could not \
                     ({error}): install Redis 7 (`redis-server` on PATH) or set \
                     AIRLOCK_SKIP_SERVICES=1"
                )
            });
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { port, child }
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        PrivateRedis::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_before_a_flush_hands_back_every_intent_and_the_worker_reconnects() {
    if redis_url().is_none() {
        return;
    }
    let mut redis = PrivateRedis::start();
    let conn = connect(&redis.url()).await;
    let queue = unique("fault");
    let run = unique("run");
    let executor = RedisExecutor::new(conn.clone()).default_queue(queue.clone());
    let note = |label: &str| Note {
        run: run.clone(),
        label: label.into(),
    };

    let worker = Worker::new(conn.clone())
        .queue(queue.clone())
        .executor(executor.clone());
    with_worker(worker, async {
        Scope::new()
            .executor(executor.clone())
            .run_async(async { airlock::enqueue(note("before")) })
            .await
            .unwrap();
        eventually(20, "the first job", || runs(&run) == ["before"]).await;

        redis.stop();
        let error = Scope::new()
            .executor(executor.clone())
            .run_async(async {
                airlock::enqueue(note("lost-1"))?;
                airlock::enqueue(note("lost-2"))?;
                airlock::enqueue(note("lost-3"))
            })
            .await
            .unwrap_err();
        let source = std::error::Error::source(&error).map(ToString::to_string);
        let message = source.unwrap_or_default();
        assert!(
            message.contains("did not confirm the push of 3 job(s)"),
            "{message}"
        );
        let handed_back = error.into_undispatched();
        let labels: Vec<_> = handed_back
            .iter()
            .map(|intent| intent.payload::<Note>().unwrap().label.clone())
            .collect();
        assert_eq!(labels, ["lost-1", "lost-2", "lost-3"]);

        // The same server comes back: the executor and the worker carry on.
        let _restarted = PrivateRedis::start_on(redis.port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut again = handed_back;
        loop {
            let retry = again.clone();
            let result = Scope::new()
                .executor(executor.clone())
                .run_async(async move {
                    for intent in retry {
                        airlock::enqueue(intent)?;
                    }
                    Ok::<(), airlock::Error>(())
                })
                .await;
            match result {
                Ok(()) => break,
                Err(error) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "no reconnection: {error}"
                    );
                    again = error.into_undispatched();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        eventually(30, "the handed-back jobs after the restart", || {
            runs(&run).len() == 4
        })
        .await;
        // `_restarted` is stopped when this block ends, after the worker saw the jobs.
        drop(_restarted);
    })
    .await;
    let mut ran = runs(&run);
    ran.sort();
    assert_eq!(ran, ["before", "lost-1", "lost-2", "lost-3"]);
}
