// `allow_unknown_fields` is a flag: no value, given once.
#[airlock::task(allow_unknown_fields = true)]
fn with_value(n: u32) {
    let _ = n;
}

#[airlock::task(allow_unknown_fields, queue = "q", allow_unknown_fields)]
fn twice(n: u32) {
    let _ = n;
}

#[airlock::task(allow_unknown_field)]
fn misspelt(n: u32) {
    let _ = n;
}

fn main() {
    with_value(1);
    twice(1);
    misspelt(1);
}
