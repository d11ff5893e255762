#[airlock::task]
fn resize((width, height): (u32, u32), Point { x, y }: Point, _: u8) {
    let _ = (width, height, x, y);
}

struct Point {
    x: i32,
    y: i32,
}

fn main() {
    resize((1, 2), Point { x: 0, y: 0 }, 0);
}
