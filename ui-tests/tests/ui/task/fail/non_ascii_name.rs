// The function's name is the task's name unless `name = ...` is given: it
// follows the same rule, so a non-ASCII name needs an explicit one.
#[airlock::task]
fn envoyer_reçu(to: String) {
    let _ = to;
}

// With an explicit name, the function's own name does not matter.
#[airlock::task(name = "mail.receipt")]
fn envoyer_facture(to: String) {
    let _ = to;
}

fn main() {
    envoyer_reçu(String::new());
    envoyer_facture(String::new());
}
