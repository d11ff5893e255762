//! The struct and its fields take the function's visibility; docs are
//! copied, or written when the function has none, so `missing_docs` holds.
#![deny(warnings, missing_docs)]
//! Crate docs.

/// Billing.
pub mod billing {
    /// Sends the invoice for an order.
    #[airlock::task]
    pub fn send_invoice(order_id: u64) {
        let _ = order_id;
    }

    #[airlock::task]
    pub(crate) fn audit(entry: String) {
        let _ = entry;
    }

    /// Only this module sees the struct; its fields are still usable here.
    #[airlock::task]
    fn internal(n: u32) {
        let _ = n;
    }

    pub(crate) fn make_internal() {
        let task = Internal { n: 3 };
        assert_eq!(task.n, 3);
        airlock::scope(|| airlock::enqueue(task)).unwrap();
    }

    /// `pub(super)` means the same for the struct as for the function.
    pub mod nested {
        #[airlock::task]
        pub(super) fn nested_task() {}

        pub(crate) fn use_it() {
            nested_task();
        }
    }

    pub(crate) fn from_parent() {
        let _ = nested::NestedTask {};
    }
}

fn main() {
    let _ = billing::SendInvoice { order_id: 1 };
    let audit = billing::Audit { entry: "x".into() };
    assert_eq!(audit.entry, "x");
    billing::make_internal();
    billing::nested::use_it();
    billing::from_parent();
    billing::send_invoice(1);
    billing::audit("x".into());
}
