#[airlock::task]
fn notify<T: serde_like::Payload>(payload: T) {
    let _ = payload;
}

#[airlock::task]
fn borrow<'a>(name: &'a str) {
    let _ = name;
}

#[airlock::task]
fn bounded(n: u32)
where
    u32: Copy,
{
    let _ = n;
}

mod serde_like {
    pub trait Payload {}
}

fn main() {
    // On error the function is still emitted: this call type-checks.
    notify(());
}

impl serde_like::Payload for () {}
