//! The code `#[airlock::task]` and `#[airlock::scoped]` generate, used the way
//! an application uses it.

use std::sync::Mutex;
use std::time::Duration;

use airlock::{DispatchOptions, DropAll, Error, Scope, Task};
use airlock_tests::{Log, Record};

static SENT: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn sent_to(prefix: &str) -> Vec<String> {
    SENT.lock()
        .unwrap()
        .iter()
        .filter(|line| line.starts_with(prefix))
        .cloned()
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("mail server down for {0}")]
struct MailError(String);

/// Emails the customer.
#[airlock::task]
fn send_confirmation_email(order_id: u64, to: String) -> Result<(), MailError> {
    if to.ends_with("@down.test") {
        return Err(MailError(to));
    }
    SENT.lock().unwrap().push(format!("{to}: order {order_id}"));
    Ok(())
}

#[airlock::task(name = "warehouse.notify", queue = "warehouse", max_attempts = 5)]
async fn notify_warehouse(order_id: u64, tag: String) -> anyhow::Result<()> {
    tokio::task::yield_now().await;
    SENT.lock()
        .unwrap()
        .push(format!("{tag}: warehouse {order_id}"));
    Ok(())
}

#[airlock::task(priority = -3, delay = "1m30s")]
fn ping() {}

/// The function keeps its signature and body: calling it still performs the
/// effect at once.
#[test]
fn the_function_stays_callable() {
    send_confirmation_email(1, "direct@callable.test".into()).unwrap();
    assert_eq!(sent_to("direct@"), ["direct@callable.test: order 1"]);
    assert!(send_confirmation_email(1, "x@down.test".into()).is_err());
}

/// The intent struct is named after the function, holds its arguments and
/// round-trips through serde.
#[test]
fn the_intent_struct_round_trips_through_serde() {
    let intent = SendConfirmationEmail {
        order_id: 7,
        to: "a@b.c".into(),
    };
    let json = serde_json::to_string(&intent).unwrap();
    assert_eq!(json, r#"{"order_id":7,"to":"a@b.c"}"#);
    let back: SendConfirmationEmail = serde_json::from_str(&json).unwrap();
    assert_eq!(back.order_id, 7);
    assert_eq!(back.clone().to, "a@b.c");
    assert!(format!("{back:?}").contains("SendConfirmationEmail"));
    let unit: Ping = serde_json::from_str("{}").unwrap();
    assert_eq!(serde_json::to_string(&unit).unwrap(), "{}");
}

/// The stable name is the function's unless `name` says otherwise.
#[test]
fn names_and_asyncness() {
    assert_eq!(SendConfirmationEmail::NAME, "send_confirmation_email");
    assert_eq!(NotifyWarehouse::NAME, "warehouse.notify");
    const { assert!(!SendConfirmationEmail::IS_ASYNC) };
    const { assert!(NotifyWarehouse::IS_ASYNC) };
}

/// Options on the attribute become the task's default dispatch options.
#[test]
fn attribute_options_are_the_default_dispatch_options() {
    assert_eq!(
        NotifyWarehouse::default_options(),
        DispatchOptions::new().queue("warehouse").max_attempts(5)
    );
    assert_eq!(
        Ping::default_options(),
        DispatchOptions::new()
            .priority(-3)
            .delay(Duration::from_secs(90))
    );
    assert_eq!(
        SendConfirmationEmail::default_options(),
        DispatchOptions::new()
    );
    let (_, intents) = airlock::capture(|| {
        airlock::enqueue(NotifyWarehouse {
            order_id: 1,
            tag: "opts".into(),
        })
    });
    assert_eq!(intents[0].options().queue.as_deref(), Some("warehouse"));
}

/// Enqueue the generated struct, inspect it by type, and let the scope run
/// the function.
#[test]
fn enqueue_inspect_and_run() {
    let mut scope = Scope::new().enter().unwrap();
    airlock::enqueue(SendConfirmationEmail {
        order_id: 42,
        to: "run@inspect.test".into(),
    })
    .unwrap();
    let intents = scope.intents();
    let payload = intents[0].payload::<SendConfirmationEmail>().unwrap();
    assert_eq!(payload.order_id, 42);
    assert_eq!(
        intents[0].to_string(),
        r#"send_confirmation_email(order_id: 42, to: "run@inspect.test")"#
    );
    assert!(sent_to("run@").is_empty(), "nothing runs before the flush");
    scope.exit().unwrap();
    scope.flush().unwrap();
    assert_eq!(sent_to("run@"), ["run@inspect.test: order 42"]);
}

/// A task's `Err` reaches the flush as a dispatch error carrying its message.
#[test]
fn a_task_error_is_a_dispatch_error() {
    let result = airlock::scope(|| {
        airlock::enqueue(SendConfirmationEmail {
            order_id: 1,
            to: "err@down.test".into(),
        })
    });
    let Err(Error::Dispatch(error)) = result else {
        panic!("expected a dispatch error, got {result:?}");
    };
    assert_eq!(error.failed_task(), "send_confirmation_email");
    assert!(
        std::error::Error::source(&*error)
            .expect("the task's error is the source")
            .to_string()
            .contains("mail server down for err@down.test")
    );
}

/// An async task is awaited by an async scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_task_in_async_scope() {
    airlock::scope_async(async {
        airlock::enqueue(NotifyWarehouse {
            order_id: 3,
            tag: "async-scope".into(),
        })
    })
    .await
    .unwrap();
    assert_eq!(sent_to("async-scope"), ["async-scope: warehouse 3"]);
}

// ---------------------------------------------------------------------------
// #[airlock::scoped]
// ---------------------------------------------------------------------------

#[airlock::scoped]
fn checkout(log: &Log, fail: bool) -> airlock::Result<u32> {
    airlock::enqueue(log.record("checkout"))?;
    if fail {
        return Err(Error::TaskFailed {
            task: "simulated",
            source: "simulated failure".into(),
        });
    }
    Ok(7)
}

#[airlock::scoped(policy = DropAll)]
fn backfill(log: &Log) -> anyhow::Result<()> {
    airlock::enqueue(log.record("backfill"))?;
    Ok(())
}

#[airlock::scoped]
fn returns_a_plain_value(log: &Log) -> usize {
    airlock::enqueue(log.record("plain")).unwrap();
    1
}

#[airlock::scoped]
fn panics(log: &Log) {
    airlock::enqueue(log.record("never")).unwrap();
    panic!("boom");
}

#[airlock::scoped]
async fn handle_async(log: Log) -> airlock::Result<()> {
    airlock::enqueue(log.record("before-await"))?;
    tokio::task::yield_now().await;
    airlock::enqueue(log.record("after-await"))?;
    assert_eq!(airlock::buffered().len(), 2);
    Ok(())
}

struct Service {
    drop_everything: bool,
    log: Log,
}

impl Service {
    fn policy(&self) -> Box<dyn airlock::Policy> {
        if self.drop_everything {
            Box::new(DropAll)
        } else {
            Box::new(airlock::AllowAll)
        }
    }

    #[airlock::scoped(policy = self.policy())]
    fn handle(&self, label: &str) -> airlock::Result<()> {
        airlock::enqueue(self.log.record(label))
    }

    #[airlock::scoped]
    fn handle_mut(&mut self) -> airlock::Result<()> {
        self.drop_everything = true;
        airlock::enqueue(self.log.record("mut"))
    }
}

#[airlock::scoped]
fn generic<T: Into<String>>(log: &Log, label: T) -> airlock::Result<()> {
    airlock::enqueue(log.record(label.into()))
}

/// `Ok` flushes, `Err` discards, and `?` works inside.
#[test]
fn scoped_flushes_on_ok_and_discards_on_err() {
    let log = Log::new();
    assert_eq!(checkout(&log, false).unwrap(), 7);
    assert_eq!(log.runs(), ["checkout"]);
    assert!(checkout(&log, true).is_err());
    assert_eq!(log.runs(), ["checkout"]);
}

/// Options apply: a `DropAll` scope dispatches nothing.
#[test]
fn scoped_policy_option() {
    let log = Log::new();
    backfill(&log).unwrap();
    assert!(log.runs().is_empty());
}

/// A plain return value counts as success.
#[test]
fn scoped_plain_return_flushes() {
    let log = Log::new();
    assert_eq!(returns_a_plain_value(&log), 1);
    assert_eq!(log.runs(), ["plain"]);
}

/// A panic discards and keeps unwinding; the thread is usable afterwards.
#[test]
fn scoped_panic_discards() {
    let log = Log::new();
    let log2 = log.clone();
    assert!(std::panic::catch_unwind(move || panics(&log2)).is_err());
    assert!(log.runs().is_empty());
    assert!(matches!(
        airlock::enqueue(Record {
            log: "x".into(),
            label: "y".into()
        }),
        Err(Error::NoScope { .. })
    ));
}

/// Methods with `&self` (options reading `self`) and `&mut self`.
#[test]
fn scoped_methods() {
    let mut service = Service {
        drop_everything: false,
        log: Log::new(),
    };
    service.handle("kept").unwrap();
    service.handle_mut().unwrap();
    service.handle("dropped").unwrap();
    assert_eq!(service.log.runs(), ["kept", "mut"]);
}

/// Generic functions keep working.
#[test]
fn scoped_generic() {
    let log = Log::new();
    generic(&log, "generic").unwrap();
    assert_eq!(log.runs(), ["generic"]);
}

/// An async scoped function's scope follows it across `.await`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_async() {
    let log = Log::new();
    handle_async(log.clone()).await.unwrap();
    assert_eq!(log.runs(), ["before-await", "after-await"]);
}
