//! What custody costs: an RS256 signature (what every mint and probe needs) made by OpenBao's
//! transit engine against one made here with the same size of key, and a key made in transit
//! against one made here (`rekey generate`, which also writes a certificate).

use crate::org::{Error, Rekey};
use crate::stats;
use crate::table::{self, Align, Table};
use rekey_api::{CustodyKey, Generation, KeyCustody, KeyMaterial, Signer};
use rekey_testkit::openbao::OpenBao;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A JWT-bearer assertion's signing input is about this long (header, iss, sub, aud, exp).
const INPUT_BYTES: usize = 300;

/// Timings of each operation.
#[derive(Debug, Default)]
pub(crate) struct Timings {
    /// Signatures by transit.
    pub(crate) transit_sign: Vec<Duration>,
    /// Signatures here, with a key in memory.
    pub(crate) local_sign: Vec<Duration>,
    /// Keys made in transit (`create_key`, with reading the public key back).
    pub(crate) transit_create: Vec<Duration>,
    /// `rekey generate` processes (key and certificate).
    pub(crate) local_create: Vec<Duration>,
}

/// `signs` signatures each way, interleaved, and `keys` keys each way.
pub(crate) async fn run(rekey: &Rekey, signs: usize, keys: usize) -> Result<Timings, Error> {
    let bao = OpenBao::start();
    let auth = rekey_vault::VaultAuth::Token(rekey_api::SecretString::new(bao.root_token()));
    let mut config = rekey_vault::VaultConfig::new(bao.addr(), auth);
    config.transit = Some(rekey_vault::TransitConfig::default());
    let store = rekey_vault::VaultStore::new(config)?;
    let transit: Arc<dyn KeyCustody> = store.transit().ok_or("no transit engine")?;
    let dir = tempfile::Builder::new()
        .prefix("rekey-bench-custody-")
        .tempdir()?;

    let mut t = Timings::default();
    for g in 1..=keys {
        let started = Instant::now();
        transit
            .create_key("bench", Generation(g as u64), 2048)
            .await?;
        t.transit_create.push(started.elapsed());
        let (key, cert) = (
            dir.path().join(format!("{g}.key")),
            dir.path().join(format!("{g}.crt")),
        );
        let started = Instant::now();
        rekey.generate(dir.path(), &key, &cert, "x", 365).await?;
        t.local_create.push(started.elapsed());
    }
    let created = transit.create_key("bench", Generation(1), 2048).await?;
    let held = CustodyKey::new(created.handle).held_by(Arc::clone(&transit));
    let local = KeyMaterial::from_pem(std::fs::read_to_string(dir.path().join("1.key"))?)?;
    let input = vec![b'x'; INPUT_BYTES];
    for _ in 0..signs {
        let started = Instant::now();
        Signer::Custody(&held).sign_rs256(&input).await?;
        t.transit_sign.push(started.elapsed());
        let started = Instant::now();
        Signer::Local(&local).sign_rs256(&input).await?;
        t.local_sign.push(started.elapsed());
    }
    Ok(t)
}

/// One row per operation: runs, median, p95, p99, max.
pub(crate) fn table(t: &Timings) -> String {
    let mut table = Table::new(&[
        ("operation", Align::Left),
        ("runs", Align::Right),
        ("median", Align::Right),
        ("p95", Align::Right),
        ("p99", Align::Right),
        ("max", Align::Right),
    ]);
    for (what, samples) in [
        (
            "RS256 signature by transit (HTTP to OpenBao on loopback)",
            &t.transit_sign,
        ),
        ("RS256 signature here, key in memory", &t.local_sign),
        (
            "RSA-2048 key made in transit, public key read back",
            &t.transit_create,
        ),
        (
            "`rekey generate` process (RSA-2048 key + certificate)",
            &t.local_create,
        ),
    ] {
        let at = |p: f64| table::millis(stats::percentile(samples, p).unwrap_or_default());
        table.row(vec![
            what.to_string(),
            samples.len().to_string(),
            table::millis(stats::median(samples).unwrap_or_default()),
            at(95.0),
            at(99.0),
            table::millis(samples.iter().max().copied().unwrap_or_default()),
        ]);
    }
    table.render()
}
