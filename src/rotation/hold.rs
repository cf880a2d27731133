//! Test-only hold points: named places in a rotation where a debug build can be made to wait, so
//! the fault tests can kill it there or break a store under it. Compiled out of release builds.

/// Test-only pause at a named point of a rotation (`generate:begin`, `publish:acted`,
/// `promote:done`, `leased`, …): when `REKEY_TEST_HOLD_AT` lists the point, the process creates
/// the file `REKEY_TEST_HOLD_FILE` and waits until it is removed. The fault-matrix tests kill the
/// process with SIGKILL while it waits, or break a store and let it go on. Compiled out of
/// release builds.
#[cfg(debug_assertions)]
pub(super) async fn hold_point(point: &str) {
    let listed = std::env::var("REKEY_TEST_HOLD_AT")
        .is_ok_and(|points| points.split(',').any(|p| p.trim() == point));
    let Some(file) = std::env::var_os("REKEY_TEST_HOLD_FILE").filter(|_| listed) else {
        return;
    };
    let file = std::path::PathBuf::from(file);
    // Written whole, then renamed into place: a test that sees the file reads the point in it,
    // never an empty file that is still being written.
    let partial = file.with_extension("partial");
    if let Err(e) = std::fs::write(&partial, point).and_then(|()| std::fs::rename(&partial, &file))
    {
        tracing::warn!(point, error = %e, "cannot write the test hold file");
        return;
    }
    while file.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(not(debug_assertions))]
pub(super) async fn hold_point(_point: &str) {}
