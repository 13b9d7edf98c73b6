//! Times `ingest::mail::parse` over every file of a directory (a Maildir's `new/`).
fn main() {
    let dir = std::env::args().nth(1).expect("DIR");
    let files: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    let t = std::time::Instant::now();
    let mut n = 0;
    for _ in 0..3 {
        for f in &files {
            if inflow::ingest::mail::parse(f, 1 << 26).is_ok() {
                n += 1;
            }
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!("{n} parses in {s:.2} s = {:.0} msg/s ({:.1} µs each)", n as f64 / s, s * 1e6 / n as f64);
}
