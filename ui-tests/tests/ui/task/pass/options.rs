//! Every option: `name`, `ident`, `queue`, `max_attempts`, `priority`, `delay`.
#![deny(warnings)]

use std::time::Duration;

use airlock::{DispatchOptions, Task};

#[airlock::task(
    name = "warehouse.notify",
    queue = "warehouse",
    max_attempts = 5,
    priority = -3,
    delay = "1m30s",
)]
fn notify_warehouse(order_id: u64) {
    let _ = order_id;
}

/// `ident` names the struct when the default (`Sync`) would clash.
#[airlock::task(ident = SyncInventory, name = "inventory::sync-v2", delay = "250ms")]
fn sync(sku: String) {
    let _ = sku;
}

/// The clash `ident` avoids: this is the std `Sync`, not a task.
fn is_sync<T: Sync>(_: &T) {}

#[airlock::task(priority = 10, max_attempts = 1u32)]
fn rank() {}

fn main() {
    assert_eq!(NotifyWarehouse::NAME, "warehouse.notify");
    assert_eq!(
        NotifyWarehouse::default_options(),
        DispatchOptions::new()
            .queue("warehouse")
            .max_attempts(5)
            .priority(-3)
            .delay(Duration::from_secs(90)),
    );

    let intent = SyncInventory { sku: "A-1".into() };
    is_sync(&intent);
    assert_eq!(SyncInventory::NAME, "inventory::sync-v2");
    assert_eq!(
        SyncInventory::default_options(),
        DispatchOptions::new().delay(Duration::from_millis(250)),
    );

    assert_eq!(
        Rank::default_options(),
        DispatchOptions::new().priority(10).max_attempts(1)
    );

    // An intent starts with its task's options.
    let ((), intents) = airlock::capture(|| {
        airlock::enqueue(NotifyWarehouse { order_id: 1 }).unwrap();
    });
    assert_eq!(intents[0].options().queue.as_deref(), Some("warehouse"));
    assert_eq!(intents[0].name(), "warehouse.notify");

    notify_warehouse(1);
    sync("A-1".into());
    rank();
    assert!(airlock::registry::lookup("warehouse.notify").is_ok());
    assert!(airlock::registry::lookup("notify_warehouse").is_err());
}
