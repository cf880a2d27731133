//! The [`SecretStore`] contract on Secrets Manager: stages as the secret's native AWSPENDING /
//! AWSCURRENT / AWSPREVIOUS labels, every label move a conditional write, the journal and the
//! lease as sibling secrets.

use super::*;

#[async_trait]
impl SecretStore for AwsStore {
    async fn preflight(&self, credential: &str) -> Result<()> {
        let name = self.key_name(credential)?;
        let Some(provider) = &self.inner.credentials else {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("{self}: no AWS credentials provider is configured"),
            ));
        };
        if let Err(e) = provider.provide_credentials().await {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("{self}: the AWS default chain found no usable credentials"),
            )
            .with_source(e)
            .with_hint(
                "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where a role is attached (web identity, instance profile)",
            ));
        }
        if self.secrets().describe(&name).await?.is_none() && !self.inner.create_missing {
            return Err(self.inner.missing(&name));
        }
        self.stages(credential).await?;
        self.read_journal(credential).await?;
        Ok(())
    }

    async fn stages(&self, credential: &str) -> Result<Stages> {
        let name = self.key_name(credential)?;
        let Some(snap) = self.secrets().describe(&name).await? else {
            return Ok(Stages::default());
        };
        let map = self.stage_map(&name, &snap).await?;
        Ok(Stages {
            current: map.current.map(|(_, i)| i),
            pending: map.pending.map(|(_, i)| i),
            previous: map.previous.map(|(_, i)| i),
        })
    }

    async fn read_stage(&self, credential: &str, stage: Stage) -> Result<Option<StoredVersion>> {
        let name = self.key_name(credential)?;
        let label = match stage {
            Stage::Current => CURRENT,
            Stage::Pending => PENDING,
            Stage::Previous => PREVIOUS,
        };
        // Read with an explicit stage, never the stage-less default (stale on moto after a
        // label move), and judge the result against the same stage map `stages` uses. A
        // promotion may move the label between the two reads: then both are made again, so a
        // reader (`rekey token`, the agent) sees one stage map or the next, never an error.
        let read = Backoff::STALE_WRITE
            .retry_stale(|| async {
                let Some(snap) = self.secrets().describe(&name).await? else {
                    return Ok(Some(None));
                };
                let map = self.stage_map(&name, &snap).await?;
                let expected = match stage {
                    Stage::Current => map.current,
                    Stage::Pending => map.pending,
                    Stage::Previous => map.previous,
                };
                let Some((version_id, info)) = expected else {
                    return Ok(Some(None));
                };
                let Some(read) = self.secrets().value_by_stage(&name, label).await? else {
                    return Ok(Some(None));
                };
                if read.version_id != version_id {
                    return Ok(None);
                }
                Ok(Some(Some((version_id, read, info))))
            })
            .await?;
        let Some(read) = read else {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: {label} of secret {name} moved while rekey read it, {} times in a row",
                    Backoff::STALE_WRITE.attempts
                ),
            )
            .with_hint(
                "another writer keeps moving this credential's labels; retry when it is done",
            )
            .temporary());
        };
        let Some((version_id, read, info)) = read else {
            return Ok(None);
        };
        self.stored_key(&name, &version_id, &read.value, info)
            .map(Some)
    }

    async fn stage(&self, credential: &str, new: &NewVersion<'_>) -> Result<()> {
        let name = self.key_name(credential)?;
        let snap = self.ensure_current_holder(credential, &name).await?;
        let ours = stage_token(new);
        let map = self.stage_map(&name, &snap).await?;
        if let Some((pending_id, pending)) = &map.pending {
            if pending.generation == new.generation
                && pending.public.fingerprint() == new.public.fingerprint()
            {
                return Ok(());
            }
            if *pending_id != ours {
                let by = pending
                    .rotation_id
                    .as_ref()
                    .map_or(String::new(), |r| format!(", rotation {r}"));
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{self}: another rotation is in flight on secret {name}: AWSPENDING is on version {pending_id} (generation {}{by})",
                        pending.generation
                    ),
                )
                .with_hint("let that rotation finish, or abort it (rekey abort) before starting another"));
            }
        }
        if let Some((_, current)) = &map.current
            && new.generation <= current.generation
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{self}: cannot stage generation {} on secret {name}: CURRENT is already generation {}",
                    new.generation, current.generation
                ),
            )
            .with_hint("another runner rotated this credential; re-read its state (rekey status)"));
        }
        let info = VersionInfo {
            generation: new.generation,
            public: new.public.clone(),
            created_at: rekey_api::now(),
            rotation_id: Some(new.rotation_id.clone()),
        };
        let value = version_value(&info, new.material)?;
        // A version with our token may exist already (a replay after a crash, or a destroyed
        // generation staged again): then the write is refused or ignored, and the label is
        // moved onto that version explicitly.
        let written = self
            .secrets()
            .put(&name, Some(&ours), &value, &[PENDING])
            .await;
        match written {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(e),
        }
        let snap = self.describe_existing(&name).await?;
        if snap.holder(PENDING) != Some(ours.as_str()) {
            let from = snap.holder(PENDING).map(str::to_string);
            if !self
                .secrets()
                .move_label(&name, PENDING, Some(&ours), from.as_deref())
                .await?
            {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("{self}: AWSPENDING of secret {name} moved while rekey staged"),
                ));
            }
        }
        Ok(())
    }

    async fn promote(&self, credential: &str, generation: Generation) -> Result<()> {
        let name = self.key_name(credential)?;
        let not_pending = || {
            Error::new(
                ErrorKind::NotFound,
                format!("{self}: generation {generation} is not pending on secret {name}"),
            )
        };
        let Some(snap) = self.secrets().describe(&name).await? else {
            return Err(not_pending());
        };
        let map = self.stage_map(&name, &snap).await?;
        let current_id = snap.holder(CURRENT).map(str::to_string);
        let promoted = match (&map.current, &map.pending) {
            (Some((id, c)), _) if c.generation == generation => id.clone(),
            (_, Some((id, p))) if p.generation == generation => {
                if !self
                    .secrets()
                    .move_label(&name, CURRENT, Some(id), current_id.as_deref())
                    .await?
                {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("{self}: AWSCURRENT of secret {name} moved while rekey promoted generation {generation}"),
                    )
                    .with_hint("another runner changed this credential; re-read its state (rekey status)"));
                }
                id.clone()
            }
            _ => return Err(not_pending()),
        };
        // AWSPENDING stays on a promoted version until removed; removing it is the second half
        // of a promotion, and a replay finishes it.
        let snap = self.describe_existing(&name).await?;
        if snap.holder(PENDING) == Some(promoted.as_str()) {
            self.secrets()
                .move_label(&name, PENDING, None, Some(&promoted))
                .await?;
        }
        self.tag_generation(&name, generation).await
    }

    async fn revert(&self, credential: &str, to: Generation) -> Result<()> {
        let name = self.key_name(credential)?;
        let not_previous = || {
            Error::new(
                ErrorKind::NotFound,
                format!("{self}: generation {to} is neither CURRENT nor PREVIOUS on secret {name}"),
            )
        };
        let Some(snap) = self.secrets().describe(&name).await? else {
            return Err(not_previous());
        };
        let map = self.stage_map(&name, &snap).await?;
        if map
            .current
            .as_ref()
            .is_some_and(|(_, c)| c.generation == to)
        {
            return self.tag_generation(&name, to).await;
        }
        let Some((previous_id, _)) = map.previous.filter(|(_, p)| p.generation == to) else {
            return Err(not_previous());
        };
        let current_id = snap.holder(CURRENT).map(str::to_string);
        if !self
            .secrets()
            .move_label(&name, CURRENT, Some(&previous_id), current_id.as_deref())
            .await?
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{self}: AWSCURRENT of secret {name} moved while rekey reverted to generation {to}"),
            )
            .with_hint("another runner changed this credential; re-read its state (rekey status)"));
        }
        self.tag_generation(&name, to).await
    }

    async fn destroy(&self, credential: &str, generation: Generation) -> Result<()> {
        let name = self.key_name(credential)?;
        let Some(snap) = self.secrets().describe(&name).await? else {
            return Ok(());
        };
        let map = self.stage_map(&name, &snap).await?;
        if map
            .current
            .as_ref()
            .is_some_and(|(_, c)| c.generation == generation)
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{self}: refusing to destroy generation {generation} of secret {name}: it is CURRENT"),
            )
            .with_hint("promote or revert to another generation first"));
        }
        let current_id = snap.holder(CURRENT);
        // Every label, the discard label included: a version without labels is found by
        // neither `read_generation` nor any stage.
        for held in self.holding(&name, &snap, generation).await? {
            if Some(held.version_id.as_str()) == current_id {
                continue;
            }
            for label in &held.labels {
                self.secrets()
                    .move_label(&name, label, None, Some(&held.version_id))
                    .await?;
            }
        }
        Ok(())
    }

    async fn discard(&self, credential: &str, generation: Generation) -> Result<()> {
        let name = self.key_name(credential)?;
        let Some(snap) = self.secrets().describe(&name).await? else {
            return Ok(());
        };
        let map = self.stage_map(&name, &snap).await?;
        let Some((pending_id, _)) = map.pending.filter(|(_, p)| p.generation == generation) else {
            return Ok(());
        };
        let label = discard_label(generation);
        // The discard label goes on before AWSPENDING comes off: in between, a crash leaves a
        // replayable discard instead of an unlabelled version that nothing can find.
        match snap.holder(&label) {
            Some(holder) if holder == pending_id => {}
            Some(holder) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{self}: generation {generation} of secret {name} was discarded before with another key (version {holder}); discarding version {pending_id} would make that key unreadable"
                    ),
                )
                .with_hint(format!(
                    "destroy the earlier discarded key first if the app no longer trusts it (remove the label: aws secretsmanager update-secret-version-stage --secret-id {name} --version-stage {label} --remove-from-version-id {holder})"
                )));
            }
            None => {
                let custom = snap
                    .labels()
                    .into_iter()
                    .filter(|l| ![CURRENT, PENDING, PREVIOUS].contains(l))
                    .count();
                if custom >= MAX_DISCARDED {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "{self}: secret {name} already carries {custom} labels besides AWSCURRENT, AWSPENDING and AWSPREVIOUS; Secrets Manager allows 20 staging labels per secret, so generation {generation} cannot be kept as discarded"
                        ),
                    )
                    .with_hint(format!(
                        "destroy old discarded generations the app no longer trusts (each is a {DISCARDED_PREFIX}<n> label: aws secretsmanager update-secret-version-stage --secret-id {name} --version-stage {DISCARDED_PREFIX}<n> --remove-from-version-id <version>), then retry"
                    )));
                }
                if !self
                    .secrets()
                    .move_label(&name, &label, Some(&pending_id), None)
                    .await?
                {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!("{self}: label {label} of secret {name} moved while rekey discarded generation {generation}"),
                    )
                    .with_hint("retry"));
                }
            }
        }
        if !self
            .secrets()
            .move_label(&name, PENDING, None, Some(&pending_id))
            .await?
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("{self}: AWSPENDING of secret {name} moved while rekey discarded generation {generation}"),
            )
            .with_hint("another runner changed this credential; re-read its state (rekey status)"));
        }
        Ok(())
    }

    async fn read_generation(
        &self,
        credential: &str,
        generation: Generation,
    ) -> Result<Option<StoredVersion>> {
        let name = self.key_name(credential)?;
        let Some(snap) = self.secrets().describe(&name).await? else {
            return Ok(None);
        };
        let Some(held) = self
            .holding(&name, &snap, generation)
            .await?
            .into_iter()
            .min_by_key(Held::rank)
        else {
            return Ok(None);
        };
        self.stored_key(&name, &held.version_id, &held.value, held.info)
            .map(Some)
    }

    /// Versions without a label are Secrets Manager's to delete (deprecated), so only the
    /// discarded generations, which keep a `REKEY_DISCARDED_G<n>` label (and a slot of the
    /// 20-label quota) until destroyed, need pruning: all but the newest one go.
    async fn prune(&self, credential: &str) -> Result<Vec<Generation>> {
        let name = self.key_name(credential)?;
        let Some(snap) = self.secrets().describe(&name).await? else {
            return Ok(Vec::new());
        };
        let stages = self.stages(credential).await?;
        let staged: Vec<Generation> = Stage::ALL
            .iter()
            .filter_map(|&s| stages.get(s).map(|v| v.generation))
            .collect();
        let mut discarded: Vec<Generation> = snap
            .labels()
            .iter()
            .filter_map(|l| l.strip_prefix(DISCARDED_PREFIX)?.parse().ok())
            .map(Generation)
            .filter(|g| !staged.contains(g))
            .collect();
        discarded.sort();
        discarded.dedup();
        let keep = discarded.len().saturating_sub(KEEP_DISCARDED);
        let old: Vec<Generation> = discarded.into_iter().take(keep).collect();
        for &generation in &old {
            self.destroy(credential, generation).await?;
        }
        Ok(old)
    }

    async fn append_journal(&self, credential: &str, entry: &JournalEntry) -> Result<()> {
        rekey_api::check_credential_name(credential)?;
        let name = self.inner.name(credential, Some("journal"));
        self.inner
            .read_modify_write(
                &name,
                credential,
                |seen| {
                    // Never appended to when an entry is damaged: the next reader could not
                    // tell what the hole was.
                    let read = scan_journal(self, seen, &name, credential)?;
                    let anchor = read.anchor.clone();
                    let mut journal = Journal {
                        entries: read.complete(self, credential)?,
                        anchor,
                    };
                    // Checked and linked against the value this write is conditional on, so a
                    // takeover between the check and the write makes the write lose its race and
                    // be checked again.
                    let linked = rekey_api::link(&journal.entries, entry)
                        .map_err(|e| e.context(format!("{self}: secret {name}")))?;
                    journal.entries.push(linked);
                    let mut value = serde_json::to_string(&journal).expect("a journal serializes");
                    while value.len() > JOURNAL_MAX_BYTES && journal.entries.len() > 1 {
                        let dropped = journal.entries.remove(0);
                        // The oldest kept entry names the dropped one as its `prev`.
                        journal.anchor =
                            rekey_api::anchor_after(std::slice::from_ref(&dropped), None);
                        value = serde_json::to_string(&journal).expect("a journal serializes");
                    }
                    Ok(value)
                },
                || {
                    Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "{self}: secret {name} kept changing; the journal entry was not written"
                        ),
                    )
                    .with_hint("retry")
                },
            )
            .await
    }

    async fn scan_journal(&self, credential: &str) -> Result<JournalRead> {
        rekey_api::check_credential_name(credential)?;
        let name = self.inner.name(credential, Some("journal"));
        let seen = self.secrets().current(&name).await?;
        scan_journal(self, &seen, &name, credential)
    }

    async fn lock(&self, credential: &str, holder: &str) -> Result<Box<dyn RotationLock>> {
        rekey_api::check_credential_name(credential)?;
        let journal = self.read_journal(credential).await?;
        self.leases.take(credential, holder, &journal).await
    }
}

/// The journal secret `name`'s AWSCURRENT value as far as it can be read: an entry that is not
/// one is named (`damaged`), the others are returned; a value that is not a journal at all is
/// refused with the store's usual error for a value rekey did not write.
fn scan_journal(
    store: &AwsStore,
    seen: &Current,
    name: &str,
    credential: &str,
) -> Result<JournalRead> {
    #[derive(Default, serde::Deserialize)]
    struct Raw {
        entries: Vec<Value>,
        #[serde(default)]
        anchor: Option<String>,
    }
    let repair = format!(
        "To repair it, move AWSCURRENT of secret {name} back to a version whose entries are all intact (`aws secretsmanager list-secret-version-ids`, then `update-secret-version-stage`), or put a value without the damaged entry; {credential}'s other secrets are untouched."
    );
    let (raw, version): (Raw, &str) = match seen {
        Current::At { version_id, value } => {
            // Not through `Current::parse`, whose message may quote the value.
            let raw = serde_json::from_str(value).map_err(|e| {
                Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{store}: version {version_id} of secret {name} (the rotation journal of '{credential}') is not a journal: {}",
                        rekey_api::parse_problem(&e)
                    ),
                )
                .with_hint(repair.clone())
            })?;
            (raw, version_id.as_str())
        }
        Current::Missing | Current::Empty => return Ok(JournalRead::default()),
    };
    let mut read = JournalRead {
        anchor: raw.anchor,
        ..JournalRead::default()
    };
    let total = raw.entries.len();
    for (i, entry) in raw.entries.into_iter().enumerate() {
        let location = format!(
            "secret {name} version {version}, entry {} of {total}",
            i + 1
        );
        match serde_json::from_value(entry) {
            Ok(entry) => {
                read.entries.push(entry);
                read.locations.push(location);
            }
            Err(e) => read.damaged.push(Damage {
                location,
                problem: rekey_api::parse_problem(&e),
                after: read.entries.len(),
            }),
        }
    }
    if !read.damaged.is_empty() {
        read.repair = Some(repair);
    }
    Ok(read)
}
