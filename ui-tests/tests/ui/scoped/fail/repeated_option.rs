#[airlock::scoped(policy = airlock::DropAll, executor = airlock::InlineExecutor, policy = airlock::AllowAll)]
fn checkout() -> airlock::Result<()> {
    Ok(())
}

fn main() {
    checkout().unwrap();
}
