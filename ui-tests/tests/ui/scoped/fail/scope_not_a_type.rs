#[airlock::scoped(scope = airlock::Independent::default())]
fn checkout() -> airlock::Result<()> {
    Ok(())
}

#[airlock::scoped(scope = 5)]
fn refund() -> airlock::Result<()> {
    Ok(())
}

fn main() {
    checkout().unwrap();
    refund().unwrap();
}
