//! Key generation: `rekey generate` against `openssl req -x509 -newkey rsa:2048 -nodes`, one
//! RSA-2048 key and self-signed certificate per process, interleaved so drift of the machine
//! hits both alike.

use crate::org::{Error, Rekey, openssl, path_arg};
use crate::stats;
use crate::table::{self, Align, Table};
use std::time::{Duration, Instant};

/// The wall time of each run of each tool.
#[derive(Debug, Default)]
pub(crate) struct Timings {
    /// `rekey generate` runs.
    pub(crate) rekey: Vec<Duration>,
    /// `openssl req -x509 -newkey rsa:2048 -nodes` runs.
    pub(crate) openssl: Vec<Duration>,
}

/// `runs` certificates with each tool: rekey, openssl, rekey, openssl, …
pub(crate) async fn run(rekey: &Rekey, runs: usize) -> Result<Timings, Error> {
    let dir = tempfile::Builder::new()
        .prefix("rekey-bench-keygen-")
        .tempdir()?;
    let mut timings = Timings::default();
    for i in 0..runs {
        let (key, cert) = (
            dir.path().join(format!("rekey-{i}.key")),
            dir.path().join(format!("rekey-{i}.crt")),
        );
        let started = Instant::now();
        rekey.generate(dir.path(), &key, &cert, "x", 365).await?;
        timings.rekey.push(started.elapsed());

        let (key, cert) = (
            dir.path().join(format!("openssl-{i}.key")),
            dir.path().join(format!("openssl-{i}.crt")),
        );
        let started = Instant::now();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            path_arg(&key)?,
            "-out",
            path_arg(&cert)?,
            "-subj",
            "/CN=x",
            "-days",
            "365",
        ])
        .await?;
        timings.openssl.push(started.elapsed());
    }
    Ok(timings)
}

/// The keygen table: mean and median per tool, and their ratio rekey / openssl.
pub(crate) fn table(t: &Timings) -> String {
    let mut table = Table::new(&[
        (
            "per certificate (RSA-2048 key + self-signed cert)",
            Align::Left,
        ),
        ("runs", Align::Right),
        ("mean", Align::Right),
        ("median", Align::Right),
        ("min", Align::Right),
        ("max", Align::Right),
    ]);
    let figures = |v: &[Duration]| {
        let min = v.iter().min().copied().unwrap_or_default();
        let max = v.iter().max().copied().unwrap_or_default();
        (
            stats::mean(v).unwrap_or_default(),
            stats::median(v).unwrap_or_default(),
            min,
            max,
        )
    };
    let rekey = figures(&t.rekey);
    let openssl = figures(&t.openssl);
    for (name, runs, (mean, median, min, max)) in [
        ("`rekey generate`", t.rekey.len(), rekey),
        (
            "`openssl req -x509 -newkey rsa:2048 -nodes`",
            t.openssl.len(),
            openssl,
        ),
    ] {
        table.row(vec![
            name.into(),
            runs.to_string(),
            table::millis(mean),
            table::millis(median),
            table::millis(min),
            table::millis(max),
        ]);
    }
    table.row(vec![
        "ratio rekey / openssl".into(),
        String::new(),
        table::ratio(rekey.0, openssl.0),
        table::ratio(rekey.1, openssl.1),
        table::ratio(rekey.2, openssl.2),
        table::ratio(rekey.3, openssl.3),
    ]);
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_row_divides_rekey_by_openssl() {
        let ms = Duration::from_millis;
        let t = Timings {
            rekey: vec![ms(50), ms(70), ms(30)],
            openssl: vec![ms(100), ms(100), ms(100)],
        };
        let text = table(&t);
        assert!(text.contains("| `rekey generate` "), "{text}");
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("| ratio rekey / openssl"), "{last}");
        // mean 50/100, median 50/100, min 30/100, max 70/100
        let cells: Vec<&str> = last.split('|').map(str::trim).collect();
        assert_eq!(cells[3..7], ["0.50×", "0.50×", "0.30×", "0.70×"]);
    }
}
