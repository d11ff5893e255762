//! Tasks and a run log shared by the job-queue test binaries
//! (`apalis_redis`, `graphile`), included in each with `#[path]`: they are
//! registered only in the binaries that run workers.

use std::sync::Mutex;

static RUNS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) fn runs(run: &str) -> Vec<String> {
    let prefix = format!("{run}:");
    RUNS.lock()
        .unwrap()
        .iter()
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

pub(crate) fn note_run(run: &str, label: &str) {
    RUNS.lock().unwrap().push(format!("{run}:{label}"));
}

/// Records that it ran.
#[airlock::task]
pub(crate) fn note(run: String, label: String) {
    note_run(&run, &label);
}

/// Records, then enqueues a follow-up `note`.
#[airlock::task]
pub(crate) fn note_then_follow_up(run: String, label: String) -> airlock::Result<()> {
    note_run(&run, &label);
    airlock::enqueue(Note {
        run,
        label: format!("{label}+follow-up"),
    })
}

/// Records the attempt, then fails.
#[airlock::task]
pub(crate) fn always_fails(run: String) -> Result<(), std::io::Error> {
    note_run(&run, "attempt");
    Err(std::io::Error::other("the mail server said no"))
}
