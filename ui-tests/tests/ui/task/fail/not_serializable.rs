/// Clone and Debug, but no serde: cannot be sent to a worker.
#[derive(Clone, Debug)]
struct Connection {
    url: String,
}

#[airlock::task]
fn ping(attempt: u32, connection: Connection) {
    let _ = (attempt, connection.url);
}

fn main() {
    ping(1, Connection { url: String::new() });
}
