use std::path::Path;

#[airlock::task]
fn send_email(to: &str, cc: &'static str) {
    let _ = (to, cc);
}

#[airlock::task]
fn import(rows: &[u64], path: &Path, config: &mut Config) {
    let _ = (rows, path, config);
}

#[airlock::task]
fn nested(names: Option<&str>, all: Vec<&[u8]>) {
    let _ = (names, all);
}

struct Config;

fn main() {
    send_email("a@b.c", "c@d.e");
}
