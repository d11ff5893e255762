//! Decoys for every name the expansion uses: it must reach the runtime only
//! through `::airlock` and std only through `::core`, so none of these local
//! items may change its meaning. No `serde` or `inventory` dependency either:
//! this crate has none.
#![deny(warnings)]
#![allow(dead_code, non_camel_case_types, unused_macros)]

mod serde {}
mod inventory {}
mod core {}
mod airlock_decoy {}
struct Box;
struct Option;
struct Clone;
struct Debug;
struct Serialize;
struct Deserialize;
struct Task;
struct Run;
struct DispatchOptions;
struct Duration;
struct Registration;
trait TaskOutput {}
macro_rules! concat {
    () => {};
}
macro_rules! line {
    () => {};
}
macro_rules! file {
    () => {};
}
macro_rules! module_path {
    () => {};
}
macro_rules! submit {
    () => {};
}
fn __airlock_assert_argument() {}
fn __airlock_assert_arguments() {}

/// `struct Result;` here would break the user's own `-> Result<..>`, so it
/// lives in a module of its own, with the task.
mod with_result_decoy {
    #![allow(dead_code)]
    struct Result;
    struct String;
    struct Vec;

    #[airlock::task(queue = "q", max_attempts = 2, priority = 1, delay = "1s")]
    pub(crate) fn decoyed(order_id: u64, to: ::std::string::String) {
        let _ = (order_id, to);
    }
}

#[airlock::task]
fn with_result(n: u8) -> ::core::result::Result<(), ::std::io::Error> {
    let _ = n;
    Ok(())
}

fn main() {
    use ::airlock::Task as _;
    with_result_decoy::Decoyed {
        order_id: 1,
        to: "a".into(),
    }
    .run()
    .wait()
    .unwrap();
    WithResult { n: 1 }.run().wait().unwrap();
}
