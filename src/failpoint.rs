//! Crash-test failpoints: `INFLOW_FAILPOINT=<name>` or `<name>:<n>` makes the process abort
//! (as SIGKILL would leave it) at that named point, so the tests can crash the real binary
//! exactly where a guarantee is at stake. Unset, each check is one environment lookup.

/// Whether the failpoint `name` (with no count) is set.
pub fn is_set(name: &str) -> bool {
    std::env::var("INFLOW_FAILPOINT").is_ok_and(|v| v == name)
}

/// Aborts the process if `INFLOW_FAILPOINT=<name>`.
pub fn hit(name: &str) {
    if is_set(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Aborts the process if `INFLOW_FAILPOINT=<name>:<n>` (the n-th time a caller counts).
pub fn hit_nth(name: &str, n: usize) {
    if let Ok(v) = std::env::var("INFLOW_FAILPOINT") {
        if let Some((p, at)) = v.split_once(':') {
            if p == name && at.parse::<usize>().ok() == Some(n) {
                eprintln!("failpoint {name}:{n}: aborting");
                std::process::abort();
            }
        }
    }
}
