struct Verbose;

#[airlock::scoped(policy = Verbose, executor = "inline")]
fn checkout() -> airlock::Result<()> {
    Ok(())
}

#[airlock::scoped(scope = String)]
fn refund() -> airlock::Result<()> {
    Ok(())
}

fn main() {
    checkout().unwrap();
    refund().unwrap();
}
