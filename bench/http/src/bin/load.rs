//! An open-loop load generator: requests at a fixed rate, whatever the
//! server's answers do, with latency measured from when each request was
//! due (a server that stalls is charged for the requests that waited behind
//! the stall, which a closed-loop client such as `wrk` leaves out).
//!
//! ```text
//! load RATE SECONDS CONNECTIONS URL...
//! load 20000 5 16 http://127.0.0.1:39080/zero http://127.0.0.1:39082/zero
//! ```
//!
//! With several URLs the requests alternate between them one by one
//! (`RATE` in all), each URL with `CONNECTIONS` keep-alive HTTP/1.1
//! connections of its own. Every URL then sees the same moments of the
//! run, so a stall of the machine lands on all of them alike: on a shared
//! VM, where such stalls decide p99, this is what makes the URLs' tails
//! comparable. `bench/http.sh` runs it below saturation to compare p99 with
//! and without `AirlockLayer`.
//!
//! A pacing thread releases one ticket per request at its due time;
//! connections take their URL's tickets as they become free. Prints one
//! line per URL: the URL, then `key=value` pairs: the requests answered,
//! latency percentiles from the due time (`p50_us`, `p90_us`, `p99_us`,
//! `p999_us`, `max_us`), p99 from the moment each request was written
//! (`service_p99_us`), and how many answers were not 2xx (`errors`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;

/// What one connection, or all of a URL's, measured.
struct Measured {
    /// Microseconds from when each request was due to its whole answer.
    from_due: Histogram<u64>,
    /// Microseconds from when each request was written to its whole answer.
    service: Histogram<u64>,
    errors: u64,
}

impl Measured {
    fn new() -> Self {
        // 1 µs to 60 s, three significant digits.
        let histogram =
            || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        Measured {
            from_due: histogram(),
            service: histogram(),
            errors: 0,
        }
    }

    fn add(&mut self, other: &Measured) {
        self.from_due.add(&other.from_due).expect("same bounds");
        self.service.add(&other.service).expect("same bounds");
        self.errors += other.errors;
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("load: {problem}\nusage: load RATE SECONDS CONNECTIONS URL...");
    std::process::exit(2);
}

/// The server broke off (closed a connection, sent no answer): the run
/// measures nothing more.
fn server_failed(uri: &Uri, what: &str, error: impl std::fmt::Display) -> ! {
    eprintln!("load: {uri}: {what}: {error}; is the server still up?");
    std::process::exit(1);
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(arg: &str, what: &str) -> T {
    arg.parse()
        .ok()
        .filter(|value| *value > T::default())
        .unwrap_or_else(|| usage(&format!("{what} {arg:?} is not a positive number")))
}

/// Opens one keep-alive connection to `uri`'s host; its driver runs on the
/// current runtime.
async fn connect(uri: &Uri) -> http1::SendRequest<Empty<Bytes>> {
    let authority = uri.authority().expect("checked in main").as_str();
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .unwrap_or_else(|error| {
            eprintln!("load: cannot connect to {authority}: {error}");
            std::process::exit(1)
        });
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .unwrap_or_else(|error| server_failed(uri, "HTTP/1.1 handshake failed", error));
    tokio::spawn(connection);
    sender
}

/// Sends `uri` for every ticket `queue` yields, until it closes.
async fn drive(
    mut sender: http1::SendRequest<Empty<Bytes>>,
    uri: Uri,
    queue: async_channel::Receiver<Instant>,
) -> Measured {
    let mut measured = Measured::new();
    let host = uri.authority().expect("checked in main").to_string();
    while let Ok(due) = queue.recv().await {
        let request = Request::get(uri.clone())
            .header(hyper::header::HOST, &host)
            .body(Empty::new())
            .expect("a valid request");
        if let Err(error) = sender.ready().await {
            server_failed(&uri, "the connection closed", error);
        }
        let written = Instant::now();
        let response = sender
            .send_request(request)
            .await
            .unwrap_or_else(|error| server_failed(&uri, "no answer", error));
        if !response.status().is_success() {
            measured.errors += 1;
        }
        if let Err(error) = response.into_body().collect().await {
            server_failed(&uri, "the answer's body broke off", error);
        }
        let done = Instant::now();
        let micros = |since: Instant| (done - since).as_micros().max(1) as u64;
        measured.from_due.saturating_record(micros(due));
        measured.service.saturating_record(micros(written));
    }
    measured
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        usage("expected RATE, SECONDS, CONNECTIONS and at least one URL");
    }
    let rate: f64 = positive(&args[0], "RATE");
    let seconds: f64 = positive(&args[1], "SECONDS");
    let connections: usize = positive(&args[2], "CONNECTIONS");
    let uris: Vec<Uri> = args[3..]
        .iter()
        .map(|arg| match arg.parse::<Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => uri,
            _ => usage(&format!("{arg:?} is not an http://host:port/path URL")),
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let measured = runtime.block_on(async {
        let mut tickets = Vec::new();
        let mut tasks = Vec::new();
        for uri in &uris {
            // Unbounded: when all of a URL's connections are busy, its
            // tickets wait here, and the wait counts from the due time.
            let (sender, queue) = async_channel::unbounded::<Instant>();
            tickets.push(sender);
            for _ in 0..connections {
                let connection = connect(uri).await;
                tasks.push((
                    tasks.len() / connections,
                    tokio::spawn(drive(connection, uri.clone(), queue.clone())),
                ));
            }
        }
        let interval = Duration::from_secs_f64(1.0 / rate);
        let total = (rate * seconds).round() as u64;
        let pacer = std::thread::spawn(move || {
            // Wake when asked, not up to the default 50 µs later. Best
            // effort: without it the release of tickets is less punctual.
            let _ = nix::sys::prctl::set_timerslack(1);
            let start = Instant::now();
            for n in 0..total {
                let due = start + interval.mul_f64(n as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                tickets[n as usize % tickets.len()]
                    .send_blocking(due)
                    .expect("the connections outlive the pacer");
            }
        });
        let mut measured: Vec<Measured> = uris.iter().map(|_| Measured::new()).collect();
        for (index, task) in tasks {
            measured[index].add(&task.await.expect("a connection task"));
        }
        pacer.join().expect("the pacer");
        measured
    });
    for (uri, measured) in uris.iter().zip(&measured) {
        let from_due = &measured.from_due;
        println!(
            "{uri} requests={} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} \
             service_p99_us={} errors={}",
            from_due.len(),
            from_due.value_at_quantile(0.50),
            from_due.value_at_quantile(0.90),
            from_due.value_at_quantile(0.99),
            from_due.value_at_quantile(0.999),
            from_due.max(),
            measured.service.value_at_quantile(0.99),
            measured.errors,
        );
    }
}
