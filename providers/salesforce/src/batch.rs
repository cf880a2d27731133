//! One deployment for many apps of one org. Salesforce runs one Metadata deployment at a time per
//! org, so the certificates of a batch of rotations are published together: each member's
//! `install` hands its modified component to the batch and waits; when every live member has
//! handed in its component (or left: its rotation stopped before publish, or needs no deploy), one
//! of the waiting members deploys them all in one deployRequest (check-only first, as a single
//! install does) and gives each member its own result. A component Salesforce refuses fails only
//! its member; the others are deployed again without it.
//!
//! The batch only coalesces the deploy: each member's rotation keeps its own journal, lease and
//! steps, and a member's install is as idempotent as a single one (an installed certificate
//! deploys nothing and never joins a deployment).

use crate::SalesforceTarget;
use crate::metadata::{self, DeployStatus};
use rekey_api::{Error, ErrorKind, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

/// A batch of rotations in one org whose certificates are published in one deployment.
#[derive(Debug, Default)]
pub struct DeployBatch {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Members that may still hand in a component (joined, neither submitted nor left).
    outstanding: BTreeSet<u64>,
    /// Components handed in and not yet deployed, by ticket.
    pending: Vec<(u64, Component)>,
    /// Results not yet taken by their member, by ticket.
    results: BTreeMap<u64, Outcome>,
    /// A member is deploying the components it took from `pending`.
    deploying: bool,
}

/// One app's component, ready to deploy.
#[derive(Clone, Debug)]
pub(crate) struct Component {
    pub(crate) type_name: &'static str,
    pub(crate) member: String,
    pub(crate) body: String,
}

/// What a member's component came to: the deploy id, or why not (kept as parts, since one error
/// may be every member's).
#[derive(Clone, Debug)]
enum Outcome {
    Deployed(String),
    Failed(Failure),
}

#[derive(Clone, Debug)]
struct Failure {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    temporary: bool,
    changed_nothing: bool,
}

impl Failure {
    fn of(e: &Error) -> Failure {
        Failure {
            kind: e.kind(),
            message: e.to_string(),
            hint: e.hint().map(str::to_string),
            temporary: e.is_temporary(),
            changed_nothing: e.is_changed_nothing(),
        }
    }

    fn error(self) -> Error {
        let mut e = Error::new(self.kind, self.message);
        if let Some(hint) = self.hint {
            e = e.with_hint(hint);
        }
        if self.temporary {
            e = e.temporary();
        }
        if self.changed_nothing {
            e = e.changed_nothing();
        }
        e
    }
}

impl DeployBatch {
    /// A new, empty batch.
    pub fn new() -> Arc<DeployBatch> {
        Arc::new(DeployBatch::default())
    }

    /// A new member: the batch waits for its component (or for it to leave) before deploying.
    /// Every member must join before any of them publishes.
    pub fn join(self: &Arc<Self>) -> BatchMember {
        let mut st = self.lock();
        let ticket = st.next;
        st.next += 1;
        st.outstanding.insert(ticket);
        BatchMember(Arc::new(MemberInner {
            batch: self.clone(),
            ticket,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn leave(&self, ticket: u64) {
        if self.lock().outstanding.remove(&ticket) {
            self.changed.notify_waiters();
        }
    }

    /// Hands in `component` for `ticket` and waits for its deploy's outcome; the member that
    /// finds the batch complete deploys it (through its own admin connection).
    async fn submit(
        &self,
        ticket: u64,
        component: Component,
        target: &SalesforceTarget,
    ) -> Result<String> {
        {
            let mut st = self.lock();
            st.outstanding.remove(&ticket);
            st.pending.push((ticket, component));
        }
        self.changed.notify_waiters();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let taken = {
                let mut st = self.lock();
                if let Some(outcome) = st.results.remove(&ticket) {
                    return outcome.into_result();
                }
                if st.deploying || !st.outstanding.is_empty() || st.pending.is_empty() {
                    None
                } else {
                    st.deploying = true;
                    Some(std::mem::take(&mut st.pending))
                }
            };
            if let Some(taken) = taken {
                let mut guard = Deploying {
                    batch: self,
                    tickets: taken.iter().map(|(t, _)| *t).collect(),
                    done: false,
                };
                let outcomes = target.deploy_components(taken).await;
                guard.done = true;
                let mut st = self.lock();
                st.results.extend(outcomes);
                st.deploying = false;
                drop(st);
                drop(guard);
                self.changed.notify_waiters();
                continue;
            }
            notified.await;
        }
    }
}

impl Outcome {
    fn into_result(self) -> Result<String> {
        match self {
            Outcome::Deployed(id) => Ok(id),
            Outcome::Failed(f) => Err(f.error()),
        }
    }
}

/// Hands every taken member an error if the deploying member's future is dropped before the
/// deploy ended, so nobody waits for results that will never come.
struct Deploying<'a> {
    batch: &'a DeployBatch,
    tickets: Vec<u64>,
    done: bool,
}

impl Drop for Deploying<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.batch.lock();
        for t in &self.tickets {
            st.results.insert(
                *t,
                Outcome::Failed(Failure::of(
                    &Error::new(
                        ErrorKind::Unavailable,
                        "the batch deploy was abandoned before it ended",
                    )
                    .with_hint("it may still finish: run again (install is idempotent)")
                    .temporary(),
                )),
            );
        }
        st.deploying = false;
        drop(st);
        self.batch.changed.notify_waiters();
    }
}

/// One rotation's place in a [`DeployBatch`]. Clones share it; it leaves the batch when
/// [`BatchMember::leave`] is called or the last clone is dropped.
#[derive(Clone, Debug)]
pub struct BatchMember(Arc<MemberInner>);

#[derive(Debug)]
struct MemberInner {
    batch: Arc<DeployBatch>,
    ticket: u64,
}

impl Drop for MemberInner {
    fn drop(&mut self) {
        self.batch.leave(self.ticket);
    }
}

impl BatchMember {
    /// This member will hand in no component (its rotation is past publish, stopped, or its
    /// certificate is installed already): the batch no longer waits for it. A later install
    /// still deploys, in the next deployment.
    pub fn leave(&self) {
        self.0.batch.leave(self.0.ticket);
    }

    pub(crate) async fn submit(
        &self,
        component: Component,
        target: &SalesforceTarget,
    ) -> Result<String> {
        self.0.batch.submit(self.0.ticket, component, target).await
    }
}

impl SalesforceTarget {
    /// Deploys `components` in one deployRequest, check-only first; a component Salesforce
    /// refuses is failed alone and the rest deployed again without it. Each ticket's outcome.
    async fn deploy_components(&self, components: Vec<(u64, Component)>) -> Vec<(u64, Outcome)> {
        let mut outcomes = Vec::new();
        let mut live = components;
        'again: while !live.is_empty() {
            let parts: Vec<(&str, &str, &str)> = live
                .iter()
                .map(|(_, c)| (c.type_name, c.member.as_str(), c.body.as_str()))
                .collect();
            let zip = match metadata::deploy_zip_of(&parts, self.client.api_version()) {
                Ok(zip) => zip,
                Err(e) => {
                    let e = Error::new(
                        ErrorKind::Unexpected,
                        format!("cannot build the deploy zip for org {}", self.org),
                    )
                    .with_source(e);
                    outcomes.extend(every(&live, &e));
                    break;
                }
            };
            let names: Vec<&str> = live.iter().map(|(_, c)| c.member.as_str()).collect();
            for check_only in [true, false] {
                let mode = if check_only {
                    "check-only deploy"
                } else {
                    "deploy"
                };
                let what = format!(
                    "{mode} of {} component(s) ({}) in org {}",
                    names.len(),
                    names.join(", "),
                    self.org
                );
                let (id, status) = match self.deploy_status(&what, &zip, check_only).await {
                    Ok(answer) => answer,
                    Err(e) => {
                        // A check-only deploy changes nothing, however it fails.
                        let e = if check_only { e.changed_nothing() } else { e };
                        outcomes.extend(every(&live, &e));
                        break 'again;
                    }
                };
                if status.status == "Succeeded" {
                    if !check_only {
                        outcomes.extend(
                            live.iter()
                                .map(|(t, _)| (*t, Outcome::Deployed(id.clone()))),
                        );
                        break 'again;
                    }
                    continue;
                }
                // Salesforce rolled the whole deploy back (rollbackOnError): nothing changed.
                let (refused, rest): (Vec<_>, Vec<_>) = live
                    .into_iter()
                    .partition(|(_, c)| status.failures.iter().any(|f| names_component(f, c)));
                if refused.is_empty() {
                    outcomes.extend(every(&rest, &rejected(&what, &id, &status, None)));
                    break 'again;
                }
                for (ticket, c) in &refused {
                    let e = rejected(&what, &id, &status, Some(c));
                    outcomes.push((*ticket, Outcome::Failed(Failure::of(&e))));
                }
                tracing::warn!(org = %self.org, deploy_id = %id, refused = refused.len(), others = rest.len(), "components refused; deploying the others without them");
                live = rest;
                continue 'again;
            }
        }
        outcomes
    }
}

/// Whether a component failure is about component `c`.
fn names_component(f: &metadata::ComponentFailure, c: &Component) -> bool {
    f.full_name.as_deref() == Some(c.member.as_str())
        || f.file_name.as_deref() == Some(metadata::file_name(c.type_name, &c.member).as_str())
}

/// The error of a deploy Salesforce refused: `c`'s own failures, or all of them.
fn rejected(what: &str, id: &str, status: &DeployStatus, c: Option<&Component>) -> Error {
    let text = match c {
        Some(c) => DeployStatus {
            id: None,
            done: true,
            status: String::new(),
            failures: status
                .failures
                .iter()
                .filter(|f| names_component(f, c))
                .map(|f| metadata::ComponentFailure {
                    file_name: f.file_name.clone(),
                    full_name: f.full_name.clone(),
                    problem: f.problem.clone(),
                })
                .collect(),
            error_message: None,
        }
        .failure_text(),
        None => status.failure_text(),
    };
    Error::new(
        ErrorKind::Rejected,
        format!("{what}: deploy {id} {}: {text}", status.status),
    )
    .with_hint("Salesforce rolled the deploy back whole (rollbackOnError), so the app is unchanged; fix the cause Salesforce names and run again")
    .changed_nothing()
}

fn every(live: &[(u64, Component)], e: &Error) -> Vec<(u64, Outcome)> {
    live.iter()
        .map(|(t, _)| (*t, Outcome::Failed(Failure::of(e))))
        .collect()
}
