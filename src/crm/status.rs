//! The statuses inflow keeps for what it received and did (issue 21 item 5): an inbound
//! event's (`inbound_event.status`, and what one message came to), a PBX call's
//! (`pbx_call.status`), a duplicate candidate's (`dup_candidate.status`) and an alert
//! notification's (`notification_log.status`). Stored as their lowercase names; Rust code
//! names them through these enums, so a misspelt status is a compile error rather than a row
//! no query finds. (A wave's own life cycle is `crm::waves::WaveState`.)

/// An enum whose variants are stored by name, with `as_str`, `parse` and serde.
macro_rules! stored_status {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                $name::parse(s).ok_or_else(|| format!("unknown {} '{s}'", stringify!($name)))
            }
        }
    };
}

stored_status!(
    /// What became of one inbound message or call record (R-EM-1, R-PBX-1).
    EventStatus {
        /// Received, not yet handled (kept for events a worker will pick up).
        Pending => "pending",
        /// Handled: its records were written.
        Processed => "processed",
        /// Handled on purpose without records (auto-reply, internal, filtered, rate-limited,
        /// a call nothing is made of). A skipped message may be planned again when it comes
        /// back (a replay); any other status is final.
        Skipped => "skipped",
        /// Seen before: nothing new recorded. Never stored (the first event stands); it is
        /// what a second arrival comes to.
        Duplicate => "duplicate",
        /// Could not be read; kept with its bytes and the reason, for replay.
        Quarantined => "quarantined",
        /// Read but could not be applied; kept with its bytes, for replay.
        Failed => "failed",
    }
);

impl EventStatus {
    /// The statuses whose bytes inflow keeps for a replay.
    pub fn keeps_raw(self) -> bool {
        matches!(self, EventStatus::Quarantined | EventStatus::Failed)
    }
}

stored_status!(
    /// A PBX call's processing (R-PBX-1): open while its events arrive, then what the last
    /// apply came to.
    CallStatus {
        Open => "open",
        Processed => "processed",
        Skipped => "skipped",
        Failed => "failed",
    }
);

stored_status!(
    /// A likely duplicate waiting for a person (R-DUP-3, R-EM-4).
    CandidateStatus {
        Open => "open",
        Merged => "merged",
        Ignored => "ignored",
    }
);

stored_status!(
    /// An overdue-alert notification.
    NotificationStatus {
        Pending => "pending",
        Sent => "sent",
        Failed => "failed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_stored_name() {
        for s in EventStatus::ALL {
            assert_eq!(EventStatus::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        for s in CallStatus::ALL {
            assert_eq!(s.as_str().parse::<CallStatus>(), Ok(*s));
        }
        for s in CandidateStatus::ALL {
            assert_eq!(CandidateStatus::parse(s.as_str()), Some(*s));
        }
        for s in NotificationStatus::ALL {
            assert_eq!(NotificationStatus::parse(&s.to_string()), Some(*s));
        }
        assert_eq!(EventStatus::parse("Processed"), None, "names are stored lowercase");
        assert!("sent".parse::<CallStatus>().unwrap_err().contains("CallStatus"));
    }

    #[test]
    fn r_em_1_only_unreadable_or_failed_messages_keep_their_bytes() {
        let kept: Vec<_> = EventStatus::ALL.iter().filter(|s| s.keeps_raw()).collect();
        assert_eq!(kept, [&EventStatus::Quarantined, &EventStatus::Failed]);
    }
}
