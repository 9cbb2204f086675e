//! Value parsers of the command line that clap has none for: sizes
//! (`--min-size 10M`) and times (`--newer 2024-01-31` or `--newer 7d`).

use std::time::{SystemTime, UNIX_EPOCH};

/// A size: a whole number of bytes with an optional binary unit `k`, `M`,
/// `G`, `T` (powers of 1024, as `find -size` and `du` count), optionally
/// followed by `B` or `iB`: `512`, `4k`, `10M`, `1.5G` is refused (whole
/// numbers only).
pub fn size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_lowercase() {
                'k' => 10,
                'm' => 20,
                'g' => 30,
                't' => 40,
                _ => return Err(format!("{s:?}: unknown unit {c:?} (k, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (a whole number with k, M, G or T)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Days since the epoch of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A point in time, seconds since the epoch: a UTC date `YYYY-MM-DD`, with
/// an optional time `THH:MM[:SS]` (or a space instead of `T`), `@<seconds>`,
/// or a duration back from now: `90s`, `30m`, `12h`, `7d`, `2w`.
pub fn time(s: &str) -> Result<i64, String> {
    time_at(s, now())
}

fn time_at(s: &str, now: i64) -> Result<i64, String> {
    let t = s.trim();
    let bad = || {
        format!(
            "{s:?} is not a time: give a UTC date (2024-01-31, 2024-01-31T08:00), \
             @<seconds since the epoch>, or a duration back from now (90s, 30m, 12h, 7d, 2w)"
        )
    };
    if let Some(secs) = t.strip_prefix('@') {
        return secs.parse().map_err(|_| bad());
    }
    if let Some(unit) = t.chars().last().filter(char::is_ascii_alphabetic) {
        let n: i64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
        let per = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        return n
            .checked_mul(per)
            .and_then(|d| now.checked_sub(d))
            .ok_or_else(bad);
    }
    let (date, clock) = match t.split_once(['T', ' ']) {
        Some((d, c)) => (d, Some(c)),
        None => (t, None),
    };
    let mut parts = date.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (y, m, d): (i64, u32, u32) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    if let Some(c) = clock {
        let f: Vec<&str> = c.trim_end_matches('Z').split(':').collect();
        if !(2..=3).contains(&f.len()) {
            return Err(bad());
        }
        let mut mult = 3600;
        for v in f {
            let v: i64 = v.parse().map_err(|_| bad())?;
            if v < 0 || v >= if mult == 3600 { 24 } else { 60 } {
                return Err(bad());
            }
            secs += v * mult;
            mult /= 60;
        }
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size("0"), Ok(0));
        assert_eq!(size("512"), Ok(512));
        assert_eq!(size("4k"), Ok(4096));
        assert_eq!(size("10M"), Ok(10 << 20));
        assert_eq!(size("2GiB"), Ok(2 << 30));
        assert_eq!(size("1TB"), Ok(1 << 40));
        for bad in ["", "1.5G", "-1", "10X", "k", "99999999999999999999T"] {
            assert!(size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(time_at("2023-11-14", 0), Ok(1_699_920_000));
        assert_eq!(time_at("2023-11-14T22:13:20", 0), Ok(1_700_000_000));
        assert_eq!(time_at("2023-11-14 22:13", 0), Ok(1_699_999_980));
        assert_eq!(time_at("2000-02-29", 0), Ok(951_782_400));
        assert_eq!(time_at("1969-12-31", 0), Ok(-86_400));
        assert_eq!(time_at("@1700000000", 0), Ok(1_700_000_000));
        assert_eq!(time_at("7d", 1_000_000), Ok(1_000_000 - 7 * 86_400));
        assert_eq!(time_at("90s", 100), Ok(10));
        for bad in ["", "yesterday", "2023-13-01", "2023-11-14T25:00", "7y", "d"] {
            assert!(time_at(bad, 0).is_err(), "{bad}");
        }
        // Round trip with the civil conversion the CLI prints with.
        let (y, m, d, h, mi, s) = file_restore_wire::civil_from_unix(1_700_000_000);
        assert_eq!(
            time_at(&format!("{y}-{m}-{d}T{h}:{mi}:{s}"), 0),
            Ok(1_700_000_000)
        );
    }
}
