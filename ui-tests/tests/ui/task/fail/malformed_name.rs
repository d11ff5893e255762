#[airlock::task(name = "send email")]
fn with_space() {}

#[airlock::task(name = ".leading.dot")]
fn leading_separator() {}

#[airlock::task(name = "billing/invoice")]
fn with_slash() {}

#[airlock::task(name = send_email)]
fn not_a_string() {}

fn main() {
    with_space();
}
