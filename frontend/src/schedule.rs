//! `update config schedule monthly|hourly|minute N`: every N months, hours or minutes.
//! Written as systemd units (`update.timer` + `update.service`, with the mark-good and
//! finalize units of the deploy engine beside them) and used by `update` without `--now` and `update agent`
//! to find the next window.

use std::fmt;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use store::durable;

use crate::error::{Error, Result};

/// Where units go, relative to the root.
pub const UNIT_DIR: &str = "etc/systemd/system";

/// The unit of a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Every {
    /// Months (on the 1st, at 00:00 UTC, plus the random delay).
    Monthly,
    /// Hours (on the hour).
    Hourly,
    /// Minutes.
    Minute,
}

/// Every `n` units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The unit.
    pub every: Every,
    /// How many of them between runs.
    pub n: u32,
}

impl Schedule {
    /// Parse the two words of `update config schedule`.
    pub fn parse(unit: &str, n: &str) -> Result<Schedule> {
        let every = match unit {
            "monthly" => Every::Monthly,
            "hourly" => Every::Hourly,
            "minute" => Every::Minute,
            _ => {
                return Err(Error::invalid(
                    format!("schedule '{unit}'"),
                    "accepted: monthly, hourly or minute, then an integer",
                ))
            }
        };
        let n: u32 = n.parse().map_err(|_| {
            Error::invalid(
                format!("schedule count '{n}'"),
                "accepted: a positive integer",
            )
        })?;
        let s = Schedule { every, n };
        s.validate()?;
        Ok(s)
    }

    /// Check the count: one that divides the next larger unit, so runs stay evenly spaced
    /// the way `OnCalendar=` repeats (minute: divisors of 60 below 60; hourly: divisors of
    /// 24 below 24; monthly: divisors of 12).
    pub fn validate(&self) -> Result<()> {
        let (unit, accepted): (&str, &[u32]) = match self.every {
            Every::Minute => ("minute", &[1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30]),
            Every::Hourly => ("hourly", &[1, 2, 3, 4, 6, 8, 12]),
            Every::Monthly => ("monthly", &[1, 2, 3, 4, 6, 12]),
        };
        if accepted.contains(&self.n) {
            return Ok(());
        }
        let list: Vec<String> = accepted.iter().map(u32::to_string).collect();
        Err(Error::invalid(
            format!("schedule {unit} {}", self.n),
            format!(
                "accepted counts for {unit}: {} (runs stay evenly spaced)",
                list.join(", ")
            ),
        ))
    }

    /// systemd's `OnCalendar=` for it.
    pub fn on_calendar(&self) -> String {
        match self.every {
            Every::Minute => format!("*-*-* *:00/{}:00", self.n),
            Every::Hourly => format!("*-*-* 00/{}:00:00", self.n),
            Every::Monthly => format!("*-01/{}-01 00:00:00", self.n),
        }
    }

    /// The spread of the random delay: a fleet does not hit the mirror at once. A tenth of
    /// the interval, at most an hour.
    pub fn max_delay_secs(&self) -> u64 {
        (self.interval_secs() / 10).min(3600)
    }

    fn interval_secs(&self) -> u64 {
        let unit = match self.every {
            Every::Minute => 60,
            Every::Hourly => 3600,
            Every::Monthly => 30 * 86400,
        };
        unit * u64::from(self.n)
    }

    /// The first window strictly after `now` (seconds since the epoch, UTC), the same
    /// instants systemd's `OnCalendar=` fires at.
    pub fn next_after(&self, now: u64) -> u64 {
        match self.every {
            Every::Minute | Every::Hourly => {
                let step = self.interval_secs();
                // Windows are aligned to the day (00:00 UTC), as OnCalendar counts from it.
                let day = now - now % 86400;
                let into = now - day;
                day + (into / step + 1) * step
            }
            Every::Monthly => {
                let (mut y, mut m, _) = civil_from_days((now / 86400) as i64);
                // Next month start that is in the calendar: months 1, 1+n, 1+2n, ...
                loop {
                    m += 1;
                    if m > 12 {
                        m = 1;
                        y += 1;
                    }
                    if (m - 1) % self.n == 0 {
                        break;
                    }
                }
                days_from_civil(y, m, 1) as u64 * 86400
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = match self.every {
            Every::Monthly => "monthly",
            Every::Hourly => "hourly",
            Every::Minute => "minute",
        };
        write!(f, "{u} {}", self.n)
    }
}

impl FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Schedule> {
        let (u, n) = s.split_once(' ').ok_or_else(|| {
            Error::invalid(
                format!("schedule '{s}'"),
                "accepted: 'monthly|hourly|minute N'",
            )
        })?;
        Schedule::parse(u, n.trim())
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Schedule, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// civil-date algorithm (public domain).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The unit files for `schedule`, by file name.
pub fn units(schedule: &Schedule, update_bin: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "update.service",
            format!(
                "# Written by `update config schedule`: one update run (check, pull, deploy, reboot).\n\
                 [Unit]\n\
                 Description=Check for and apply an OS update\n\
                 Documentation=man:update(1)\n\
                 Wants=network-online.target\n\
                 After=network-online.target update-mark-good.service\n\
                 \n\
                 [Service]\n\
                 Type=oneshot\n\
                 ExecStart={update_bin} --now\n"
            ),
        ),
        (
            "update.timer",
            format!(
                "# Written by `update config schedule {schedule}`.\n\
                 [Unit]\n\
                 Description=Check for OS updates ({schedule})\n\
                 \n\
                 [Timer]\n\
                 OnCalendar={}\n\
                 RandomizedDelaySec={}\n\
                 Persistent=true\n\
                 \n\
                 [Install]\n\
                 WantedBy=timers.target\n",
                schedule.on_calendar(),
                schedule.max_delay_secs()
            ),
        ),
        ("update-mark-good.service", MARK_GOOD_UNIT.replace("/usr/bin/update", update_bin)),
        ("update-finalize.service", FINALIZE_UNIT.replace("/usr/bin/update", update_bin)),
    ]
}

/// The deploy engine's mark-good unit (`dist/systemd/update-mark-good.service`).
pub const MARK_GOOD_UNIT: &str = include_str!("../../dist/systemd/update-mark-good.service");

/// The deploy engine's shutdown-time finalization unit
/// (`dist/systemd/update-finalize.service`).
pub const FINALIZE_UNIT: &str = include_str!("../../dist/systemd/update-finalize.service");

/// Write the units under `root` (each atomically) and enable the timer and the mark-good
/// and finalize units the way `systemctl enable` does: symlinks in the `.wants` directories.
pub fn write_units(root: &Path, schedule: &Schedule, update_bin: &str) -> Result<Vec<PathBuf>> {
    let root_fd = store::durable::open_dir(root).map_err(|e| Error::Io {
        path: root.to_path_buf(),
        source: e.into(),
    })?;
    let dir_path = root.join(UNIT_DIR);
    let dir = durable::mkdir_all_at(root_fd.as_fd(), Path::new(UNIT_DIR), &dir_path)?;
    let mut written = Vec::new();
    for (name, text) in units(schedule, update_bin) {
        durable::write_atomic(
            dir.as_fd(),
            name,
            text.as_bytes(),
            0o644,
            &dir_path.join(name),
        )?;
        written.push(dir_path.join(name));
    }
    for (wants, unit) in [
        ("timers.target.wants", "update.timer"),
        ("basic.target.wants", "update-mark-good.service"),
        ("basic.target.wants", "update-finalize.service"),
    ] {
        let w = durable::mkdir_all_at(dir.as_fd(), Path::new(wants), &dir_path.join(wants))?;
        let link = format!("../{unit}");
        match rustix::fs::symlinkat(link.as_str(), &w, unit) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(Error::Io {
                    path: dir_path.join(wants).join(unit),
                    source: e.into(),
                })
            }
        }
        rustix::fs::fsync(&w).map_err(|e| Error::Io {
            path: dir_path.join(wants),
            source: e.into(),
        })?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_match_on_calendar() {
        // 2026-11-25 17:22:39 UTC
        let now = 1_795_627_359;
        let h6 = Schedule::parse("hourly", "6").unwrap();
        assert_eq!(h6.next_after(now), 1_795_629_600); // 18:00
        let m15 = Schedule::parse("minute", "15").unwrap();
        assert_eq!(m15.next_after(now), now - now % 86400 + 17 * 3600 + 30 * 60);
        let mo = Schedule::parse("monthly", "1").unwrap();
        assert_eq!(
            mo.next_after(now),
            days_from_civil(2026, 12, 1) as u64 * 86400
        );
        let mo3 = Schedule::parse("monthly", "3").unwrap();
        assert_eq!(
            mo3.next_after(now),
            days_from_civil(2027, 1, 1) as u64 * 86400
        );
        assert_eq!(h6.on_calendar(), "*-*-* 00/6:00:00");
    }

    #[test]
    fn bad_counts_say_what_is_accepted() {
        for (u, n) in [
            ("hourly", "0"),
            ("hourly", "5"),
            ("minute", "7"),
            ("minute", "60"),
            ("monthly", "13"),
            ("weekly", "1"),
            ("hourly", "x"),
        ] {
            let e = Schedule::parse(u, n).unwrap_err().to_string();
            assert!(e.contains("accepted") || e.contains("use "), "{u} {n}: {e}");
        }
        assert_eq!(
            "minute 30".parse::<Schedule>().unwrap().to_string(),
            "minute 30"
        );
    }

    #[test]
    fn civil_round_trip() {
        for d in [-1000i64, 0, 59, 60, 365, 11_016, 20_000, 20_417] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }
}
