//! Decoys for every name the expansion uses; the user's `Result` is shadowed
//! only inside a module so that the user's own code still compiles.
#![deny(warnings)]
#![allow(dead_code, non_camel_case_types)]

mod serde {}
mod core {}
mod airlock_decoy {}
struct Box;
struct Scope;
struct Outcome;
struct Default;
struct Kind;
trait ViaAny {}
trait ViaResult {}
trait ViaOutcome {}

mod with_result_decoy {
    #![allow(dead_code)]
    struct Result;
    struct Option;

    #[airlock::scoped(scope = airlock::Independent)]
    pub(crate) fn decoyed(n: u32) -> u32 {
        n + 1
    }

    #[airlock::scoped]
    pub(crate) async fn decoyed_async(n: u32) -> ::core::result::Result<u32, ::airlock::Error> {
        Ok(n)
    }
}

#[airlock::scoped]
fn locals(__airlock_scope: u32, __airlock_out: u32) -> u32 {
    // The body sees the arguments, not the expansion's locals.
    __airlock_scope + __airlock_out
}

fn main() {
    assert_eq!(with_result_decoy::decoyed(1), 2);
    drop(with_result_decoy::decoyed_async(1));
    assert_eq!(locals(1, 2), 3);
}
