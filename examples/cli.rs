//! The command-line boundary: a batch job runs in one scope, so its effects
//! escape only if the whole batch succeeds; `--dry-run` dispatches nothing
//! and prints what would have been dispatched.
//!
//! ```text
//! cargo run --example cli -- 1 2 3
//! cargo run --example cli -- 1 2 3 --dry-run
//! cargo run --example cli -- 1 0 3          # order 0 fails: nothing is sent
//! ```

use airlock::{DryRun, Scope};
use anyhow::{Context, bail};
use clap::Parser;

/// Refunds orders and tells their customers.
#[derive(Debug, Parser)]
#[command(name = "refund", about = "Refunds orders and emails their customers.")]
struct Args {
    /// The orders to refund.
    #[arg(required = true)]
    orders: Vec<u64>,

    /// Refund nothing for real: print what would be dispatched instead.
    #[arg(long)]
    dry_run: bool,
}

/// Sends the refund to the payment provider.
#[airlock::task(name = "payments.refund")]
fn refund_payment(order_id: u64, amount_cents: u64) {
    println!("refunded {amount_cents} cents for order {order_id}");
}

/// Tells the customer.
#[airlock::task]
fn send_refund_email(order_id: u64, to: String) {
    println!("emailed {to} about order {order_id}");
}

/// The batch: domain code that states its effects and performs none.
fn refund_all(orders: &[u64]) -> anyhow::Result<()> {
    for &order_id in orders {
        if order_id == 0 {
            bail!("order 0 does not exist: check the ids and run again (nothing was refunded)");
        }
        airlock::enqueue(RefundPayment {
            order_id,
            amount_cents: 1_000 + order_id * 250,
        })?;
        airlock::enqueue(SendRefundEmail {
            order_id,
            to: format!("customer{order_id}@example.com"),
        })?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();

    let dry_run = DryRun::new();
    let scope = if args.dry_run {
        Scope::new().policy(dry_run.clone())
    } else {
        Scope::new()
    };
    scope
        .run(|| refund_all(&args.orders))
        .context("the refund batch failed")?;
    for intent in dry_run.take() {
        println!("would dispatch: {intent}");
    }
    Ok(())
}
