//! Who holds a lease (a mailbox, wave claims): `<host>:<pid>:<random>`, and whether such a
//! holder is provably gone — on this host, with its process no longer running — so its
//! lease can be taken at once instead of waiting for it to run out (a daemon restarted by
//! systemd after a crash). A holder on another host, or whose pid is alive (even reused), is
//! never presumed gone: the lease then runs out as before.

/// This process's holder id.
pub fn holder_id(host: &str) -> String {
    format!("{host}:{}:{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The host and pid a holder id names, if it is one.
pub fn parse(holder: &str) -> Option<(&str, u32)> {
    let mut it = holder.rsplitn(3, ':');
    let _random = it.next()?;
    let pid = it.next()?.parse().ok()?;
    let host = it.next()?;
    Some((host, pid))
}

/// Whether `holder` is a process of this host (`host`) that no longer runs. Our own pid is
/// never gone.
pub fn is_gone(holder: &str, host: &str) -> bool {
    match parse(holder) {
        Some((h, pid)) if h == host && pid != std::process::id() => {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

/// This host's name (as the kernel has it).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_ids_name_their_host_and_pid() {
        let id = holder_id("crm-1.example.com");
        assert_eq!(parse(&id), Some(("crm-1.example.com", std::process::id())));
        assert_eq!(parse("cli-42"), None);
        assert_eq!(parse("a:b:c"), None, "no pid");
    }

    #[test]
    fn only_a_dead_process_of_this_host_is_gone() {
        // A pid far above pid_max is never running.
        assert!(is_gone("here:999999999:abcd1234", "here"));
        assert!(!is_gone("elsewhere:999999999:abcd1234", "here"), "another host: wait for the lease");
        assert!(!is_gone(&holder_id("here"), "here"), "our own process");
        assert!(!is_gone("here:1:abcd1234", "here"), "a running process (init)");
        assert!(!is_gone("garbage", "here"));
    }
}
