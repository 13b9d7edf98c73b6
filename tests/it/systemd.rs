//! The systemd unit as shipped (issue 8): `systemd-analyze security --offline=true` must rate
//! its exposure at most 1.5, `systemd-analyze verify` must be clean (run in a throwaway root
//! holding the built binary at /usr/bin/inflow and the host's own system units), and the unit
//! keeps the daemon's contract: Type=notify with a watchdog, its own user, state and config
//! directories, and a stop timeout above the shutdown limit.

use std::path::Path;
use std::process::Command;

use crate::helpers::inflow_bin;

fn unit_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/inflow.service")
}

fn analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze is required (Debian package systemd): {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn unit_exposure_is_at_most_1_5() {
    let (ok, out) = analyze(&["security", "--offline=true", unit_path().to_str().unwrap()]);
    assert!(ok, "{out}");
    let level: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for inflow.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    assert!(level <= 1.5, "exposure {level}:\n{out}");
}

#[test]
fn unit_verifies_clean() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("usr/bin")).unwrap();
    std::fs::create_dir_all(r.join("etc/systemd/system")).unwrap();
    std::fs::create_dir_all(r.join("usr/lib/systemd/system")).unwrap();
    std::fs::copy(inflow_bin(), r.join("usr/bin/inflow")).unwrap();
    std::fs::copy(unit_path(), r.join("etc/systemd/system/inflow.service")).unwrap();
    // The targets and services the unit orders itself against, as the host has them.
    for dir in ["/lib/systemd/system", "/usr/lib/systemd/system"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name();
            let n = name.to_string_lossy();
            if (n.ends_with(".target") || n.ends_with(".service") || n.ends_with(".socket") || n.ends_with(".slice"))
                && e.path().is_file()
            {
                let _ = std::fs::copy(e.path(), r.join("usr/lib/systemd/system").join(&name));
            }
        }
    }
    let (ok, out) = analyze(&["verify", &format!("--root={}", r.display()), "inflow.service"]);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify:\n{out}");
}

#[test]
fn unit_keeps_the_daemon_contract() {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{key}= missing"))
    };
    assert_eq!(value("Type"), "notify");
    assert_eq!(value("User"), "inflow");
    assert_eq!(value("StateDirectory"), "inflow");
    assert_eq!(value("ConfigurationDirectory"), "inflow");
    assert_eq!(value("Restart"), "on-failure");
    assert!(value("WatchdogSec").ends_with('s'));
    let stop: u64 = value("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    let limit = inflow::config::DaemonConfig::default().shutdown_timeout_secs;
    assert!(stop > limit, "TimeoutStopSec {stop} must exceed daemon.shutdown_timeout_secs {limit}");
    assert!(value("ExecStart").starts_with("/usr/bin/inflow --config /etc/inflow/inflow.toml run"));
}
