//! An `exec` consumer is a command run once per notice with `REKEY_*` variables in an otherwise
//! cleared environment and, when configured, the key in a fresh 0600 temporary file or on its
//! standard input (never on its command line or in a variable). Its exit status is the verdict;
//! a timeout kills its whole process group; a failure quotes its last stderr lines with anything
//! that could be key material elided.

use super::elide::stderr_tail;
use super::{
    Adoption, Announcement, Consumer, Identity, Notice, expect_stage, file_error, stage_name,
};
use crate::config::DeliverKey;
use async_trait::async_trait;
use rekey_api::{Error, ErrorKind, Material, Result};
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How much of a command's stderr is kept while it runs (the tail).
const STDERR_KEEP: usize = 16 * 1024;
/// How long a finished command's stderr may stay open (a background child holding it).
const STDERR_GRACE: Duration = Duration::from_secs(2);
/// The only variables of rekey's own environment an `exec` consumer inherits: rekey's
/// credentials (`VAULT_TOKEN`, `AWS_*`, `SF_ACCESS_TOKEN`, secrets named by `*_env`) never reach it.
const INHERITED_ENV: [&str; 8] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

/// A command told about each generation.
pub(super) struct ExecConsumer {
    id: Identity,
    program: PathBuf,
    args: Vec<String>,
    deliver_key: DeliverKey,
    timeout: Duration,
    /// [`INHERITED_ENV`] as rekey found it when the consumer was built.
    inherited: Vec<(&'static str, OsString)>,
}

impl std::fmt::Debug for ExecConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecConsumer")
            .field("name", &self.id.name)
            .field("program", &self.program)
            .field("deliver_key", &self.deliver_key)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ExecConsumer {
    /// A consumer running `command` (program first, then its arguments).
    pub(super) fn new(
        id: Identity,
        command: &[String],
        deliver_key: DeliverKey,
        timeout: Duration,
    ) -> Result<ExecConsumer> {
        let (program, args) = command.split_first().ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("exec consumer '{}': command is empty", id.name),
            )
        })?;
        Ok(ExecConsumer {
            id,
            program: PathBuf::from(program),
            args: args.to_vec(),
            deliver_key,
            timeout,
            inherited: INHERITED_ENV
                .iter()
                .filter_map(|var| std::env::var_os(var).map(|v| (*var, v)))
                .collect(),
        })
    }

    /// Runs the command once for `notice`; exit 0 is success.
    async fn run(&self, notice: Notice, p: &Announcement<'_>) -> Result<String> {
        let label = self.label();
        let program = self.program.display().to_string();
        let key = match self.deliver_key {
            DeliverKey::None => None,
            DeliverKey::File | DeliverKey::Stdin => Some(p.material.ok_or_else(|| {
                Error::new(
                    ErrorKind::Unexpected,
                    format!(
                        "{label}: deliver_key needs the key, but {} was announced without it",
                        notice.as_str()
                    ),
                )
                .with_hint("this is a rekey bug; please report it")
            })?),
        };
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .env_clear()
            .envs(self.inherited.iter().map(|(k, v)| (k, v)))
            .env("REKEY_CREDENTIAL", p.credential)
            .env("REKEY_GENERATION", p.generation.to_string())
            .env("REKEY_FINGERPRINT", p.new_fingerprint.to_hex())
            .env("REKEY_STAGE", stage_name(p.stage))
            .env("REKEY_EVENT", notice.as_str())
            .env("REKEY_READ_FROM", &p.read_from)
            .stdin(if self.deliver_key == DeliverKey::Stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout ends whatever it started too.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(old) = p.old_fingerprint {
            command.env("REKEY_OLD_FINGERPRINT", old.to_hex());
        }
        // Refused before anything runs when the key is one that is never handed out.
        let stdin_key = match (self.deliver_key, key) {
            (DeliverKey::Stdin, Some(key)) => Some(super::handover(key)?),
            _ => None,
        };
        // Removed when this function returns, whatever happens.
        let key_file = match (self.deliver_key, key) {
            (DeliverKey::File, Some(key)) => Some(KeyFile::create(key, &label)?),
            _ => None,
        };
        if let Some(file) = &key_file {
            command.env("REKEY_KEY_FILE", &file.path);
        }
        let started = Instant::now();
        let mut child = command.spawn().map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::Config,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Unexpected,
            };
            Error::new(kind, format!("{label}: cannot run {program}"))
                .with_source(e)
                .with_hint(format!(
                    "{}: command[0] must be an executable file (absolute, or relative to the config's folder; $PATH is not searched)",
                    self.id.origin
                ))
        })?;
        // Declared after `child`, so dropped before it: the group is killed while its leader is
        // not yet reaped (its id cannot have been reused).
        let mut group = GroupKill(
            child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(i32::try_from(id).ok()?)),
        );
        let stderr = child.stderr.take();
        let tail = tokio::spawn(async move {
            let mut kept = Vec::new();
            if let Some(mut stderr) = stderr {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > STDERR_KEEP {
                        kept.drain(..kept.len() - STDERR_KEEP);
                    }
                }
            }
            kept
        });
        let stdin = child.stdin.take();
        let feed = async {
            if let (Some(mut stdin), Some(key)) = (stdin, &stdin_key) {
                // A command that exits without reading is judged by its exit status alone.
                if let Err(e) = stdin.write_all(key.as_bytes()).await {
                    tracing::debug!(consumer = %self.id.name, error = %e, "stdin not fully read");
                }
                // Dropping it closes the pipe: end of input.
            }
        };
        let waited = tokio::time::timeout(self.timeout, async {
            let ((), status) = tokio::join!(feed, child.wait());
            status
        })
        .await;
        let status = match waited {
            Ok(status) => {
                // Reaped: whatever it left running in its group was meant to keep running.
                group.0 = None;
                status.map_err(|e| {
                    Error::new(
                        ErrorKind::Unexpected,
                        format!("{label}: lost track of {program}"),
                    )
                    .with_source(e)
                })?
            }
            Err(_) => {
                group.kill();
                let _ = child.kill().await;
                tail.abort();
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{label}: {program} did not finish {} within {} s and was killed",
                        notice.as_str(),
                        self.timeout.as_secs()
                    ),
                )
                .with_hint("raise the consumer's timeout_secs or make the command faster"));
            }
        };
        let millis = started.elapsed().as_millis();
        drop(key_file);
        if status.success() {
            tail.abort();
            let delivered = match self.deliver_key {
                DeliverKey::None => "",
                DeliverKey::File => ", key by file",
                DeliverKey::Stdin => ", key on stdin",
            };
            return Ok(format!(
                "{program} {}: exit 0 in {millis} ms{delivered}",
                notice.as_str()
            ));
        }
        let stderr = match tokio::time::timeout(STDERR_GRACE, tail).await {
            Ok(Ok(bytes)) => bytes,
            _ => Vec::new(),
        };
        let said = stderr_tail(&stderr, p.material.and_then(super::secret_text));
        let how = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "failed".to_string(),
        };
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        Err(Error::new(
            ErrorKind::Rejected,
            format!("{label}: {program} {} failed with {how}{said}", notice.as_str()),
        )
        .with_hint("the command's last stderr lines are quoted; fix the consumer, then `rekey resume` repeats the step"))
    }
}

#[async_trait]
impl Consumer for ExecConsumer {
    fn identity(&self) -> &Identity {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "exec"
    }

    async fn prepare(&self, p: &Announcement<'_>) -> Result<String> {
        expect_stage(&self.label(), Notice::Prepare, p)?;
        self.run(Notice::Prepare, p).await
    }

    async fn activate(&self, p: &Announcement<'_>) -> Result<String> {
        expect_stage(&self.label(), Notice::Activate, p)?;
        self.run(Notice::Activate, p).await
    }

    async fn adopted(&self, _: &Announcement<'_>) -> Result<Adoption> {
        Ok(Adoption::Adopted {
            detail: format!("{} succeeded for activate", self.program.display()),
        })
    }
}

/// Kills an `exec` consumer's process group when dropped (a timeout, or the run abandoned),
/// unless disarmed once its leader was reaped.
struct GroupKill(Option<rustix::process::Pid>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 0600 temporary file holding the key, created fresh (never through an existing name) and
/// removed when dropped.
struct KeyFile {
    path: PathBuf,
}

impl KeyFile {
    fn create(key: &Material, label: &str) -> Result<KeyFile> {
        let handed = super::handover(key)?;
        let dir = std::env::temp_dir();
        let mut last = None;
        for _ in 0..8 {
            let path = dir.join(format!(
                "rekey-key-{}-{:016x}.pem",
                std::process::id(),
                rand::random::<u64>()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut file) => {
                    // From here on the guard removes it, also if writing fails.
                    let guard = KeyFile { path };
                    file.write_all(handed.as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(|e| file_error(label, &guard.path, e))?;
                    return Ok(guard);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(file_error(label, &path, e)),
            }
        }
        Err(file_error(
            label,
            &dir,
            last.unwrap_or_else(|| std::io::Error::other("no free name")),
        ))
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumers::testing::*;
    use rekey_api::Stage;
    use sha2::Digest as _;

    #[tokio::test]
    async fn exec_gets_rekey_variables_and_the_key_in_a_0600_file_that_is_gone_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "hook.sh",
            r#"out="$1"
env > "$out/env"
printf '%s\n' "$0" "$@" > "$out/argv"
echo "$REKEY_KEY_FILE" > "$out/path"
stat -c %a "$REKEY_KEY_FILE" > "$out/mode"
sha256sum < "$REKEY_KEY_FILE" | cut -d' ' -f1 > "$out/key.sha256""#,
        );
        let consumer = exec(dir.path(), &hook, "deliver_key = \"file\"\n");
        let detail = consumer.prepare(&announce(Stage::Pending)).await.unwrap();
        assert!(
            detail.starts_with(&format!("{} prepare: exit 0 in ", hook.display()))
                && detail.ends_with(" ms, key by file"),
            "{detail}"
        );
        let out = dir.path().join("out");
        let (key, cert, _, old) = pairs();
        assert_eq!(
            read(out.join("key.sha256")).trim(),
            hex::encode(sha2::Sha256::digest(
                crate::consumers::secret_text(key).unwrap()
            ))
        );
        assert_eq!(read(out.join("mode")).trim(), "600");
        let key_file = PathBuf::from(read(out.join("path")).trim());
        assert!(key_file.starts_with(std::env::temp_dir()), "{key_file:?}");
        assert!(!key_file.exists(), "the key file is removed after the run");

        let env = read(out.join("env"));
        for expected in [
            "REKEY_CREDENTIAL=billing".to_string(),
            "REKEY_GENERATION=7".to_string(),
            format!("REKEY_FINGERPRINT={}", cert.fingerprint),
            format!("REKEY_OLD_FINGERPRINT={}", old.fingerprint),
            "REKEY_STAGE=pending".to_string(),
            "REKEY_EVENT=prepare".to_string(),
            "REKEY_READ_FROM=vault secret/rekey/billing/pending".to_string(),
            format!("REKEY_KEY_FILE={}", key_file.display()),
        ] {
            assert!(env.lines().any(|l| l == expected), "{expected} in\n{env}");
        }
        // rekey's own environment stays behind (cargo sets CARGO_* for tests).
        if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
            assert!(!env.contains("CARGO_MANIFEST_DIR="), "{env}");
        }
        let argv = read(out.join("argv"));
        assert_eq!(argv, format!("{}\n{}\n", hook.display(), out.display()));
        assert_no_key(&env);
        assert_no_key(&argv);
    }

    #[tokio::test]
    async fn exec_can_get_the_key_on_stdin_and_is_told_activate() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "hook.sh",
            r#"sha256sum | cut -d' ' -f1 > "$1/stdin.sha256"
env > "$1/env"
printf '%s\n' "$0" "$@" > "$1/argv""#,
        );
        let consumer = exec(dir.path(), &hook, "deliver_key = \"stdin\"\n");
        let p = announce(Stage::Current);
        let detail = consumer.activate(&p).await.unwrap();
        assert!(detail.ends_with(" ms, key on stdin"), "{detail}");
        let out = dir.path().join("out");
        assert_eq!(
            read(out.join("stdin.sha256")).trim(),
            hex::encode(sha2::Sha256::digest(
                crate::consumers::secret_text(&pairs().0).unwrap()
            ))
        );
        let env = read(out.join("env"));
        assert!(
            env.lines().any(|l| l == "REKEY_EVENT=activate")
                && env.lines().any(|l| l == "REKEY_STAGE=current")
                && !env.contains("REKEY_KEY_FILE"),
            "{env}"
        );
        assert_no_key(&env);
        assert_no_key(&read(out.join("argv")));
        let adoption = consumer.adopted(&p).await.unwrap();
        assert!(adoption.is_adopted(), "{adoption:?}");

        // Without deliver_key the command gets nothing on stdin.
        let quiet = exec(dir.path(), &hook, "");
        quiet.activate(&p).await.unwrap();
        assert_eq!(
            read(out.join("stdin.sha256")).trim(),
            hex::encode(sha2::Sha256::digest(b""))
        );
    }

    #[tokio::test]
    async fn a_failing_command_is_an_error_with_its_code_and_stderr_but_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "fail.sh",
            r#"echo "$REKEY_KEY_FILE" > "$1/path"
echo "reloading billing-sync" >&2
cat "$REKEY_KEY_FILE" >&2
echo "cannot reload: permission denied" >&2
exit 3"#,
        );
        let consumer = exec(dir.path(), &hook, "deliver_key = \"file\"\n");
        let err = consumer
            .activate(&announce(Stage::Current))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected);
        let text = err.to_string();
        // The last five lines: two full body lines, the short last one, the END armour line.
        assert_eq!(
            text,
            format!(
                "exec consumer 'reload': {} activate failed with exit code 3: \
                 [elided] | [elided] | [elided] | [elided] | cannot reload: permission denied",
                hook.display()
            )
        );
        assert_no_key(&text);
        assert_no_key(&format!("{err:?}"));
        let key_file = PathBuf::from(read(dir.path().join("out/path")).trim());
        assert!(!key_file.exists(), "removed after a failure too");

        // A program that is not there is named, with where it is configured.
        let missing = exec(dir.path(), &dir.path().join("nope.sh"), "");
        let err = missing
            .prepare(&announce(Stage::Pending))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains("cannot run"), "{err}");
        assert!(err.hint().unwrap().contains("rekey.toml:"), "{err:?}");

        // The stage must match the operation.
        let err = missing
            .prepare(&announce(Stage::Current))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unexpected);
    }

    /// A generous bound on waiting for a process to end or a file to appear: only a guard
    /// against hanging, far above what either takes on a loaded machine.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    /// Whether process `pid` is gone (or a zombie nobody reaped yet), before [`HANG_GUARD`].
    async fn ends(pid: &str) -> bool {
        let deadline = Instant::now() + HANG_GUARD;
        while Instant::now() < deadline {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z') =>
                {
                    return true;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        false
    }

    /// The contents of `path` once a command has written it (renamed into place, so complete).
    async fn written(path: PathBuf) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_command_that_times_out_or_is_abandoned_is_ended_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        // Never finishes on its own: it waits for a sleep far longer than any timeout here, and
        // says which process that sleep is once it started it.
        let slow = script(
            dir.path(),
            "slow.sh",
            "echo \"$REKEY_KEY_FILE\" > \"$1/path\"\nsleep 3600 &\necho $! > \"$1/child.new\"\nmv \"$1/child.new\" \"$1/child\"\nwait\n",
        );
        let out = dir.path().join("out");
        // The timeout runs from the spawn: on a machine too loaded for the script to even start
        // its sleep within it, there is nothing to check, so that try is repeated with a longer
        // timeout. Whether the command is killed never depends on speed: it cannot finish.
        let mut timeout = 1;
        let child = loop {
            let consumer = exec(
                dir.path(),
                &slow,
                &format!("deliver_key = \"file\"\ntimeout_secs = {timeout}\n"),
            );
            let err = consumer
                .prepare(&announce(Stage::Pending))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable);
            assert!(
                err.to_string().contains(&format!(
                    "did not finish prepare within {timeout} s and was killed"
                )),
                "{err}"
            );
            if let Ok(child) = std::fs::read_to_string(out.join("child")) {
                break child;
            }
            assert!(timeout < 32, "the script never got to start its sleep");
            timeout *= 2;
        };
        assert!(ends(child.trim()).await, "the sleep it started was killed");
        assert!(!PathBuf::from(read(out.join("path")).trim()).exists());

        // Abandoned (the future dropped) once the command is known to be running; only then.
        std::fs::remove_file(out.join("child")).unwrap();
        let consumer = exec(
            dir.path(),
            &slow,
            "deliver_key = \"file\"\ntimeout_secs = 3600\n",
        );
        let current = announce(Stage::Current);
        let child = tokio::select! {
            done = consumer.activate(&current) => panic!("finished: {done:?}"),
            child = written(out.join("child")) => child,
        };
        assert!(ends(child.trim()).await, "killed when abandoned");
        assert!(!PathBuf::from(read(out.join("path")).trim()).exists());
    }
}
