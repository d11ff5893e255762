//! For the outbox test: commits three intents in outbox mode (and rolls one
//! back), then starts dispatching them and hangs mid-dispatch until the test
//! kills it with SIGKILL.
//!
//! `outbox_child sqlite <path> <log>` or
//! `outbox_child postgres <url> <schema> <log>`; with `--exit-after-commit`
//! last, it exits after the COMMIT instead (a writer in another process).

use std::io::Write;

use airlock::sqlx::{Backend, Relay, TxError, TxScope};
use airlock::{Dispatch, Executor, Intents};
use airlock_tests::sqlx_db::{Effect, pg_pool, sqlite_pool};

/// Says it is dispatching, then never finishes.
struct Hang;

impl Executor for Hang {
    fn dispatch(&self, intents: Intents) -> Dispatch {
        Dispatch::Pending(Box::pin(async move {
            let _held = intents;
            println!("DISPATCHING");
            std::io::stdout().flush().unwrap();
            std::future::pending().await
        }))
    }
}

async fn run<DB: Backend>(pool: sqlx::Pool<DB>, log: String, exit_after_commit: bool) {
    let outbox = TxScope::<DB>::new().outbox();
    outbox
        .run(&pool, |_tx| {
            let log = log.clone();
            Box::pin(async move {
                for label in ["c1", "c2", "c3"] {
                    airlock::enqueue(Effect {
                        log: log.clone(),
                        label: label.into(),
                    })?;
                }
                Ok::<_, TxError>(())
            })
        })
        .await
        .unwrap();
    let rolled_back: Result<(), TxError> = outbox
        .run(&pool, |_tx| {
            let log = log.clone();
            Box::pin(async move {
                airlock::enqueue(Effect {
                    log,
                    label: "r1".into(),
                })?;
                Err(TxError::NotOwned)
            })
        })
        .await;
    assert!(rolled_back.is_err());
    println!("COMMITTED");
    std::io::stdout().flush().unwrap();
    if exit_after_commit {
        return;
    }
    // SQLite: the killed relay's lease on the rows runs out after 1 s.
    let relay = Relay::new(pool, Hang).lease(std::time::Duration::from_secs(1));
    let _ = relay.run_once().await;
    unreachable!("the Hang executor never finishes");
}

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let exit = args.last().is_some_and(|arg| arg == "--exit-after-commit");
    if exit {
        args.pop();
    }
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["sqlite", path, log] => {
            run(sqlite_pool(path.as_ref(), 2).await, log.to_owned(), exit).await;
        }
        ["postgres", url, schema, log] => {
            run(pg_pool(url, schema, 2).await, log.to_owned(), exit).await;
        }
        _ => panic!("usage: outbox_child sqlite <path> <log> | postgres <url> <schema> <log>"),
    }
}
