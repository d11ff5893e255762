//! Methods: `&self`, `&mut self`, `self`, `Self` in signatures, options that
//! read `self`.
#![deny(warnings)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use airlock::{AllowAll, DropAll, InlineExecutor, Policy};

static SENT: AtomicU32 = AtomicU32::new(0);

#[airlock::task]
fn send(n: u32) {
    SENT.fetch_add(n, Ordering::SeqCst);
}

fn sent() -> u32 {
    SENT.swap(0, Ordering::SeqCst)
}

#[derive(Clone)]
struct Service {
    dry_run: bool,
    executor: Arc<InlineExecutor>,
    count: u32,
    name: String,
}

impl Service {
    fn policy(&self) -> Box<dyn Policy> {
        if self.dry_run {
            Box::new(DropAll)
        } else {
            Box::new(AllowAll)
        }
    }

    #[airlock::scoped(policy = self.policy(), executor = self.executor.clone())]
    fn handle(&self, n: u32) -> airlock::Result<u32> {
        airlock::enqueue(Send { n })?;
        Ok(n + self.count)
    }

    #[airlock::scoped]
    fn bump(&mut self) -> &mut Self {
        self.count += 1;
        airlock::enqueue(Send { n: 1 }).unwrap();
        self
    }

    #[airlock::scoped]
    fn name(&self) -> &str {
        &self.name
    }

    #[airlock::scoped]
    fn into_count(self) -> u32 {
        airlock::enqueue(Send { n: self.count }).unwrap();
        self.count
    }

    #[airlock::scoped]
    fn new(count: u32) -> Self {
        Service {
            dry_run: false,
            executor: Arc::new(InlineExecutor),
            count,
            name: "svc".into(),
        }
    }
}

trait Handler {
    fn call(&self, n: u32) -> u32;

    #[airlock::scoped]
    fn call_twice(&self, n: u32) -> u32 {
        self.call(n) + self.call(n)
    }
}

impl Handler for Service {
    #[airlock::scoped]
    fn call(&self, n: u32) -> u32 {
        airlock::enqueue(Send { n }).unwrap();
        n
    }
}

fn main() {
    let mut service = Service::new(0);
    assert_eq!(service.handle(4).unwrap(), 4);
    assert_eq!(sent(), 4);
    service.dry_run = true;
    assert_eq!(service.handle(4).unwrap(), 4);
    assert_eq!(sent(), 0, "DropAll from self.policy()");

    service.bump().bump();
    assert_eq!(service.count, 2);
    assert_eq!(sent(), 2);
    assert_eq!(service.name(), "svc");

    service.dry_run = false;
    // Nested: the inner scopes' intents are captured by the outer one.
    assert_eq!(service.call_twice(3), 6);
    assert_eq!(sent(), 6);

    assert_eq!(service.clone().into_count(), 2);
    assert_eq!(sent(), 2);
}
