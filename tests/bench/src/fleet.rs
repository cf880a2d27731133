//! Fleet: one `rekey run` rotating N apps of one org (in batches of `[run] max_batch`, each batch's
//! certificates in one deployment of an org that deploys one at a time), `[run] concurrency`
//! generating at a time, against the keygen-only lower bound: N `rekey generate` runs at the same
//! concurrency, on the same machine in the same bench run.

use crate::machine::{CpuMeter, Load};
use crate::org::{Error, Rekey, Spec, World};
use crate::table::{self, Align, Table};
use orgsim::PropagationMode;
use std::time::{Duration, Instant};

/// What the fleet run measured.
#[derive(Debug)]
pub(crate) struct Fleet {
    /// Apps (credentials) rotated.
    pub(crate) apps: usize,
    /// `[run] concurrency`, and the concurrency of the keygen-only runs.
    pub(crate) concurrency: usize,
    /// Wall time of `rekey run`.
    pub(crate) run: Duration,
    /// Wall time of N `rekey generate` runs, `concurrency` at a time.
    pub(crate) keygen: Duration,
    /// How busy the machine was during `rekey run`.
    pub(crate) load: Load,
}

/// Builds an org whose N apps hold certificates ending in 10 days (inside `renew_before_days`,
/// so every credential is due) and times one `rekey run`, which must rotate them all. The first
/// key pairs are made by N `rekey generate` runs, `concurrency` at a time, before the emulator
/// starts: that is the keygen-only bound.
pub(crate) async fn run(rekey: &Rekey, apps: usize, concurrency: usize) -> Result<Fleet, Error> {
    let spec = Spec {
        apps,
        days: 10,
        propagation_secs: 0,
        propagation_mode: PropagationMode::New,
        concurrency,
    };
    let world = World::build(rekey, &spec).await?;
    let first: Vec<Option<String>> = world
        .apps
        .iter()
        .map(|a| world.app_certificate(a))
        .collect();

    let meter = CpuMeter::start();
    let started = Instant::now();
    let out = rekey.output(world.path(), &["run", "--json"]).await?;
    let took = started.elapsed();
    let load = meter.stop();

    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "rekey run --json printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    let rotated = report["credentials"].as_array().map_or(0, |rows| {
        rows.iter().filter(|r| r["action"] == "rotated").count()
    });
    let changed = world
        .apps
        .iter()
        .zip(&first)
        .filter(|(a, before)| world.app_certificate(a) != **before)
        .count();
    if !out.status.success() || rotated != apps || changed != apps {
        return Err(format!(
            "rekey run exited with {} and rotated {rotated} of {apps} credentials ({changed} apps hold a new certificate):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    let fleet = Fleet {
        apps,
        concurrency,
        run: took,
        keygen: world.keygen,
        load,
    };
    world.shutdown().await;
    Ok(fleet)
}

/// The fleet table.
pub(crate) fn table(f: &Fleet) -> String {
    let mut t = Table::new(&[
        ("apps", Align::Right),
        ("concurrency", Align::Right),
        ("`rekey run` (all rotated)", Align::Right),
        ("keygen-only bound (N × `rekey generate`)", Align::Right),
        ("run / bound", Align::Right),
        ("rotations/s", Align::Right),
        ("CPU busy avg / peak", Align::Right),
    ]);
    t.row(vec![
        f.apps.to_string(),
        f.concurrency.to_string(),
        table::secs(f.run),
        table::secs(f.keygen),
        table::ratio(f.run, f.keygen),
        format!("{:.1}", f.apps as f64 / f.run.as_secs_f64().max(1e-9)),
        f.load.render(),
    ]);
    t.render()
}
