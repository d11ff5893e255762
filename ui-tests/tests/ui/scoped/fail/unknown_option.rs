#[airlock::scoped(policy = airlock::DropAll, polcy = airlock::AllowAll)]
fn checkout() -> airlock::Result<()> {
    Ok(())
}

fn main() {
    checkout().unwrap();
}
