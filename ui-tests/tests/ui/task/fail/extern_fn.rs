#[airlock::task]
extern "C" fn callback(code: i32) {
    let _ = code;
}

fn main() {
    callback(1);
}
