//! The org's mutable state: users, metadata components, sessions, deploys, and the test
//! controls (clock, faults, call log). Everything lives behind one mutex in `server::Shared`.

use crate::certs::Cert;
use crate::deploy::Deploy;
use crate::faults::{CallRecord, Fault};
use crate::seed::{OrgSeed, PermissionSetSeed, ProfileSeed, PropagationMode, Seed, Settings};
use crate::xml::{Element, METADATA_NS};
use rand::Rng;
use std::collections::{BTreeMap, HashMap};

mod activity;
mod apps;
mod audit;
mod consumers;
mod ids;

pub(crate) use activity::{AuditEntry, Login};

pub(crate) use activity::LOGIN_RATE_EXCEEDED;
pub(crate) use apps::{certificate, parse_root, scope_tokens, set_certificate};
pub(crate) use consumers::{ConsumerError, StagedCredential};
pub(crate) use ids::{id18, random_token, same_id};

/// The metadata types the emulator understands, with their zip folder and file suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MetaType {
    pub(crate) name: &'static str,
    pub(crate) folder: &'static str,
    pub(crate) suffix: &'static str,
    id_prefix: &'static str,
    /// Member-name suffix the seed uses for ECA satellites (`<eca><seed_suffix>`).
    seed_suffix: &'static str,
}

/// ConnectedApp.
pub(crate) const CONNECTED_APP: MetaType = MetaType {
    name: "ConnectedApp",
    folder: "connectedApps",
    suffix: "connectedApp",
    id_prefix: "0H4",
    seed_suffix: "",
};
/// ECA header.
pub(crate) const ECA: MetaType = MetaType {
    name: "ExternalClientApplication",
    folder: "externalClientApps",
    suffix: "eca",
    id_prefix: "0xI",
    seed_suffix: "",
};
/// ECA developer OAuth settings.
pub(crate) const ECA_OAUTH: MetaType = MetaType {
    name: "ExtlClntAppOauthSettings",
    folder: "extlClntAppOauthSettings",
    suffix: "ecaOauth",
    id_prefix: "0xA",
    seed_suffix: "_oauth",
};
/// ECA global OAuth settings (certificate, consumer key/secret).
pub(crate) const ECA_GLOBAL: MetaType = MetaType {
    name: "ExtlClntAppGlobalOauthSettings",
    folder: "extlClntAppGlobalOauthSets",
    suffix: "ecaGlblOauth",
    id_prefix: "0xB",
    seed_suffix: "_glbloauth",
};
/// ECA admin OAuth policies.
pub(crate) const ECA_OAUTH_POLICIES: MetaType = MetaType {
    name: "ExtlClntAppOauthConfigurablePolicies",
    folder: "extlClntAppOauthPolicies",
    suffix: "ecaOauthPlcy",
    id_prefix: "0xC",
    seed_suffix: "_oauthPlcy",
};
/// ECA plugin switches.
pub(crate) const ECA_POLICIES: MetaType = MetaType {
    name: "ExtlClntAppConfigurablePolicies",
    folder: "extlClntAppPolicies",
    suffix: "ecaPlcy",
    id_prefix: "0xD",
    seed_suffix: "_plcy",
};

/// All supported types.
pub(crate) const META_TYPES: [MetaType; 6] = [
    CONNECTED_APP,
    ECA,
    ECA_OAUTH,
    ECA_GLOBAL,
    ECA_OAUTH_POLICIES,
    ECA_POLICIES,
];

impl MetaType {
    /// Looks a type up by its Metadata API name.
    pub(crate) fn by_name(name: &str) -> Option<MetaType> {
        META_TYPES.into_iter().find(|t| t.name == name)
    }

    /// True for the four ECA satellite types, which point at their ECA by name.
    pub(crate) fn is_eca_satellite(&self) -> bool {
        !matches!(self.name, "ConnectedApp" | "ExternalClientApplication")
    }
}

/// A stored metadata component (the root element carries no `fullName`; the key does).
#[derive(Debug, Clone)]
pub(crate) struct Component {
    pub(crate) element: Element,
    pub(crate) id: String,
    pub(crate) created: i64,
    pub(crate) modified: i64,
    /// User id of who created it (the first deploy, or the seed's first user).
    pub(crate) created_by: String,
    pub(crate) modified_by: String,
}

/// An app as the token endpoint sees it, assembled from its component(s).
#[derive(Debug, Clone)]
pub(crate) struct AppView {
    pub(crate) kind: MetaType,
    pub(crate) name: String,
    pub(crate) certificate: Option<String>,
    pub(crate) admin_approved: bool,
    pub(crate) profiles: Vec<String>,
    pub(crate) permission_sets: Vec<String>,
    pub(crate) session_timeout_minutes: Option<u32>,
    pub(crate) oauth_enabled: bool,
    pub(crate) scope: String,
}

impl AppView {
    /// Key for per-app bookkeeping (sessions, approvals, certificate changes).
    pub(crate) fn key(&self) -> String {
        app_key(self.kind, &self.name)
    }
}

/// `Type:Name`, so a ConnectedApp and an ECA with the same name never collide.
pub(crate) fn app_key(kind: MetaType, name: &str) -> String {
    format!("{}:{}", kind.name, name)
}

/// A user from the seed with a resolved id.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) name: String,
    pub(crate) profile: String,
    pub(crate) permission_sets: Vec<String>,
    pub(crate) active: bool,
}

/// A login session (one live session per user and app), the `AuthSession` sObject's source.
/// Ended sessions are kept (with how they ended) so tests can inspect them.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// AuthSession id.
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) user_id: String,
    pub(crate) app_key: String,
    pub(crate) created: i64,
    pub(crate) last_used: i64,
    pub(crate) timeout_secs: i64,
    /// `LoginHistoryId` of the AuthSession record: the login that created the session.
    pub(crate) login_history_id: String,
    /// Address the login came from.
    pub(crate) source_ip: String,
    /// Set when the session was ended before it timed out.
    pub(crate) ended: Option<SessionEnd>,
}

/// How a session ended before its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// `DELETE /sobjects/AuthSession/{id}`.
    Deleted,
    /// `/services/oauth2/revoke` of the access token, or of a refresh-token grant it belongs
    /// to, or an ECA's `DELETE /apps/oauth/usage/{appId}/tokens`.
    Revoked,
}

impl Session {
    /// Whether the session still authenticates at `now`.
    pub(crate) fn live_at(&self, now: i64) -> bool {
        self.ended.is_none() && now < self.last_used + self.timeout_secs
    }
}

/// A refresh-token grant: a user approved an app (the `OauthToken` sObject's rows, and the
/// approval the self-authorized JWT flow needs).
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) user_id: String,
    pub(crate) app_key: String,
    /// The refresh token (revocable through `/services/oauth2/revoke`, never shown in reads).
    pub(crate) refresh_token: String,
    /// `OauthToken.DeleteToken`: revokes the grant through `/services/oauth2/revoke`.
    pub(crate) delete_token: String,
    pub(crate) created: i64,
    pub(crate) last_used: i64,
    pub(crate) use_count: u32,
}

/// An open query cursor (`nextRecordsUrl` pages through it).
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    /// Every record the query matched, rendered when the query ran.
    pub(crate) records: Vec<serde_json::Value>,
    /// `totalSize`: the records matched (a `COUNT()` query keeps none).
    pub(crate) total: usize,
    pub(crate) page_size: usize,
    /// Records past this index are never delivered (OauthToken stops at 2500).
    pub(crate) deliverable: usize,
}

/// The certificate an app had before its latest change, for the propagation window.
#[derive(Debug, Clone)]
pub(crate) struct CertChange {
    old: Option<Cert>,
    /// Simulated time of the change, in milliseconds, so a window lasts exactly
    /// `propagation_secs` whatever fraction of a second the change happened in.
    at_ms: i64,
}

/// Who asks for a component check: seeds may create ConnectedApps even while creation is
/// blocked (the apps predate the block), and deploys differ by `ignoreWarnings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Seed,
    Deploy,
    DeployIgnoringWarnings,
}

/// A user's permission set assignment (`PermissionSetAssignment`), the profile's own
/// permission set included.
#[derive(Debug, Clone)]
pub(crate) struct Assignment {
    pub(crate) id: String,
    pub(crate) user_id: String,
    pub(crate) permission_set_id: String,
}

/// Whole-org state.
#[derive(Debug)]
pub(crate) struct OrgState {
    pub(crate) org: OrgSeed,
    pub(crate) settings: Settings,
    profiles: HashMap<String, ProfileSeed>,
    /// Profile name → `00e…` id, for `User.ProfileId`.
    profile_ids: HashMap<String, String>,
    /// Profile name → `0PS…` id of the permission set the profile owns.
    profile_permission_sets: HashMap<String, String>,
    permission_sets: HashMap<String, PermissionSetSeed>,
    /// Permission set name → `0PS…` id.
    permission_set_ids: HashMap<String, String>,
    pub(crate) assignments: Vec<Assignment>,
    pub(crate) users: Vec<User>,
    /// `LoginHistory`: every token request that named a known user, oldest first.
    pub(crate) logins: Vec<Login>,
    /// `SetupAuditTrail`: every metadata change deploys made, oldest first.
    pub(crate) audit: Vec<AuditEntry>,
    /// When the org was seeded (simulated clock): `Organization.CreatedDate`.
    pub(crate) created: i64,
    pub(crate) grants: Vec<Grant>,
    /// Keyed by (type name, member full name).
    pub(crate) components: BTreeMap<(String, String), Component>,
    cert_changes: HashMap<String, CertChange>,
    /// Every certificate each app has held since its first change, oldest first.
    cert_history: HashMap<String, Vec<Cert>>,
    pub(crate) sessions: Vec<Session>,
    pub(crate) cursors: HashMap<String, Cursor>,
    pub(crate) deploys: HashMap<String, Deploy>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) calls: Vec<CallRecord>,
    pub(crate) clock_offset: i64,
    /// The staged credential of each ECA consumer (at most one), by ECA name.
    pub(crate) staged: HashMap<String, StagedCredential>,
    /// Permissions granted (`true`) or taken away (`false`) at runtime through the control API,
    /// by (user id, permission); they win over profiles and permission sets.
    permission_overrides: HashMap<(String, String), bool>,
    /// Simulated times of the API calls of the last 24 hours, oldest first.
    api_calls: std::collections::VecDeque<i64>,
    id_counter: u64,
}

impl OrgState {
    /// Builds the org a seed describes.
    pub(crate) fn from_seed(seed: &Seed) -> Result<OrgState, String> {
        if seed.org.id.len() != 18 || !seed.org.id.starts_with("00D") {
            return Err(format!(
                "org id {:?} is not an 18-character 00D… id",
                seed.org.id
            ));
        }
        for range in &seed.org.trusted_ip_ranges {
            let same_family = range.start.is_ipv4() == range.end.is_ipv4();
            if !same_family || range.start > range.end {
                return Err(format!(
                    "trusted IP range {}–{} is not a range of one address family, start first",
                    range.start, range.end
                ));
            }
        }
        let mut state = OrgState {
            org: seed.org.clone(),
            settings: seed.settings.clone(),
            profiles: seed
                .profiles
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect(),
            profile_ids: HashMap::new(),
            profile_permission_sets: HashMap::new(),
            permission_set_ids: HashMap::new(),
            assignments: Vec::new(),
            logins: Vec::new(),
            audit: Vec::new(),
            created: chrono::Utc::now().timestamp(),
            permission_sets: seed
                .permission_sets
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect(),
            users: Vec::new(),
            grants: Vec::new(),
            components: BTreeMap::new(),
            cert_changes: HashMap::new(),
            cert_history: HashMap::new(),
            sessions: Vec::new(),
            cursors: HashMap::new(),
            deploys: HashMap::new(),
            faults: Vec::new(),
            calls: Vec::new(),
            clock_offset: 0,
            staged: HashMap::new(),
            permission_overrides: HashMap::new(),
            api_calls: std::collections::VecDeque::new(),
            id_counter: 0,
        };
        for p in &seed.profiles {
            let id = state.new_id("00e");
            state.profile_ids.insert(p.name.clone(), id);
            let owned = state.new_id("0PS");
            state.profile_permission_sets.insert(p.name.clone(), owned);
        }
        for p in &seed.permission_sets {
            let id = state.new_id("0PS");
            state.permission_set_ids.insert(p.name.clone(), id);
        }
        for u in &seed.users {
            if !state.profiles.contains_key(&u.profile) {
                return Err(format!(
                    "user {} has unknown profile {}",
                    u.username, u.profile
                ));
            }
            if let Some(ps) = u
                .permission_sets
                .iter()
                .find(|p| !state.permission_sets.contains_key(*p))
            {
                return Err(format!(
                    "user {} has unknown permission set {ps}",
                    u.username
                ));
            }
            let id = match &u.id {
                Some(id) if id.len() == 18 => id.clone(),
                Some(id) => return Err(format!("user id {id:?} is not 18 characters")),
                None => state.new_id("005"),
            };
            let name = u
                .name
                .clone()
                .unwrap_or_else(|| u.username.split('@').next().unwrap_or("").to_string());
            let mut sets = vec![state.profile_permission_sets[&u.profile].clone()];
            sets.extend(
                u.permission_sets
                    .iter()
                    .map(|p| state.permission_set_ids[p].clone()),
            );
            for permission_set_id in sets {
                let assignment = Assignment {
                    id: state.new_id("0Pa"),
                    user_id: id.clone(),
                    permission_set_id,
                };
                state.assignments.push(assignment);
            }
            state.users.push(User {
                id,
                username: u.username.clone(),
                name,
                profile: u.profile.clone(),
                permission_sets: u.permission_sets.clone(),
                active: u.active,
            });
        }
        let admin = state
            .users
            .first()
            .map(|u| u.id.clone())
            .unwrap_or_default();
        for ca in &seed.connected_apps {
            let xml = ca
                .metadata
                .as_deref()
                .ok_or(format!("connected app {} has no metadata", ca.full_name))?;
            let mut element = parse_root(xml, CONNECTED_APP)
                .map_err(|e| format!("connected app {}: {e}", ca.full_name))?;
            if let Some(cert) = &ca.certificate {
                set_certificate(&mut element, CONNECTED_APP, cert);
            }
            if ca.consumer_key.is_some() || ca.consumer_secret.is_some() {
                if element.child("oauthConfig").is_none() {
                    element.children.push(Element::new("oauthConfig"));
                }
                let oauth = element.child_mut("oauthConfig").expect("just ensured");
                seed_credentials(
                    oauth,
                    &ca.consumer_key,
                    &ca.consumer_secret,
                    &format!("connected app {}", ca.full_name),
                )?;
            }
            state.seed_component(CONNECTED_APP, &ca.full_name, element, &admin)?;
        }
        for eca in &seed.external_client_apps {
            let header = match &eca.header {
                Some(xml) => parse_root(xml, ECA).map_err(|e| format!("ECA {}: {e}", eca.name))?,
                None => {
                    let mut e = Element::new(ECA.name);
                    e.set_child_text("label", &eca.name);
                    e
                }
            };
            state.seed_component(ECA, &eca.name, header, &admin)?;
            if let Some(id) = &eca.id {
                if id.len() != 18 || !id.starts_with("0xI") {
                    return Err(format!(
                        "ECA {} id {id:?} is not an 18-character 0xI… id",
                        eca.name
                    ));
                }
                let taken = state.components.values().any(|c| c.id == *id);
                if taken {
                    return Err(format!("ECA {} id {id} is already taken", eca.name));
                }
                if let Some(c) = state
                    .components
                    .get_mut(&(ECA.name.to_string(), eca.name.clone()))
                {
                    c.id = id.clone();
                }
            }
            let satellites = [
                (ECA_OAUTH, &eca.oauth_settings),
                (ECA_GLOBAL, &eca.global_oauth_settings),
                (ECA_OAUTH_POLICIES, &eca.oauth_policies),
                (ECA_POLICIES, &eca.policies),
            ];
            for (kind, xml) in satellites {
                let mut element = match xml {
                    Some(xml) => {
                        parse_root(xml, kind).map_err(|e| format!("ECA {}: {e}", eca.name))?
                    }
                    // A certificate alone still needs a global settings component to live on.
                    None if kind == ECA_GLOBAL
                        && (eca.certificate.is_some()
                            || eca.consumer_key.is_some()
                            || eca.consumer_secret.is_some()) =>
                    {
                        Element::new(kind.name)
                    }
                    None => continue,
                };
                element.set_child_text("externalClientApplication", &eca.name);
                if let (ECA_GLOBAL, Some(cert)) = (kind, &eca.certificate) {
                    set_certificate(&mut element, ECA_GLOBAL, cert);
                }
                if kind == ECA_GLOBAL {
                    seed_credentials(
                        &mut element,
                        &eca.consumer_key,
                        &eca.consumer_secret,
                        &format!("ECA {}", eca.name),
                    )?;
                }
                let member = format!("{}{}", eca.name, kind.seed_suffix);
                state.seed_component(kind, &member, element, &admin)?;
            }
        }
        state.seed_history(seed)?;
        Ok(state)
    }

    /// Adds a refresh-token grant (an approval) of `app` (ConnectedApp full name or ECA name)
    /// for `username`.
    pub(crate) fn add_grant(&mut self, username: &str, app: &str) -> Result<Grant, String> {
        let user_id = self
            .user_by_username(username)
            .ok_or(format!("unknown user {username}"))?
            .id
            .clone();
        let kind = [CONNECTED_APP, ECA]
            .into_iter()
            .find(|k| self.component(*k, app).is_some())
            .ok_or(format!("unknown app {app}"))?;
        let now = self.now();
        let grant = Grant {
            user_id,
            app_key: app_key(kind, app),
            refresh_token: format!("5Aep861{}", random_token(80, "")),
            delete_token: random_token(64, "DT"),
            created: now,
            last_used: now,
            use_count: 0,
        };
        self.grants.push(grant.clone());
        Ok(grant)
    }

    /// Adds a seed component after the same checks a deploy would make.
    fn seed_component(
        &mut self,
        kind: MetaType,
        member: &str,
        element: Element,
        by: &str,
    ) -> Result<(), String> {
        let issues = self.check_component(kind, member, &element, &[], Check::Seed);
        if let Some(problem) = issues.into_iter().next() {
            return Err(format!("{} {member}: {problem}", kind.name));
        }
        self.put_component(kind, member, element, by);
        Ok(())
    }

    /// Simulated now (unix seconds): wall clock plus the test offset.
    pub(crate) fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.clock_offset
    }

    /// Simulated now in unix milliseconds (the propagation window's clock).
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis() + self.clock_offset * 1000
    }

    /// A fresh 18-character Salesforce id with this key prefix.
    pub(crate) fn new_id(&mut self, prefix: &str) -> String {
        self.id_counter += 1;
        id18(&format!("{prefix}5g{:010}", self.id_counter))
    }

    /// The user with this login name.
    pub(crate) fn user_by_username(&self, username: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.username.eq_ignore_ascii_case(username))
    }

    /// The user with this id.
    pub(crate) fn user_by_id(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// True when the user's profile or a permission set grants this permission.
    pub(crate) fn has_permission(&self, user: &User, permission: &str) -> bool {
        if let Some(granted) = self
            .permission_overrides
            .get(&(user.id.clone(), permission.to_string()))
        {
            return *granted;
        }
        let in_profile = self
            .profiles
            .get(&user.profile)
            .is_some_and(|p| p.permissions.iter().any(|x| x == permission));
        in_profile
            || user.permission_sets.iter().any(|ps| {
                self.permission_sets
                    .get(ps)
                    .is_some_and(|p| p.permissions.iter().any(|x| x == permission))
            })
    }

    /// Admin Metadata access: Modify All Data or Modify Metadata.
    pub(crate) fn can_modify_metadata(&self, user: &User) -> bool {
        self.has_permission(user, "ModifyAllData") || self.has_permission(user, "ModifyMetadata")
    }

    /// Uses the user's approval of this app for a login: its newest grant's `UseCount` and
    /// `LastUsedDate` move. False when the user has not approved the app.
    pub(crate) fn use_approval(&mut self, user: &User, app: &AppView) -> bool {
        let key = app.key();
        let now = self.now();
        match self
            .grants
            .iter_mut()
            .rev()
            .find(|g| g.user_id == user.id && g.app_key == key)
        {
            Some(g) => {
                g.use_count += 1;
                g.last_used = now;
                true
            }
            None => false,
        }
    }

    /// Whether the user holds this permission directly or through Modify All Data, which a
    /// real org's System Administrator profile holds together with Manage Users and
    /// Customize Application.
    pub(crate) fn has_permission_or_all_data(&self, user: &User, permission: &str) -> bool {
        self.has_permission(user, permission) || self.has_permission(user, "ModifyAllData")
    }

    /// Ends a live session; false when no live session has this id.
    pub(crate) fn end_session(&mut self, id: &str, how: SessionEnd) -> bool {
        let now = self.now();
        match self
            .sessions
            .iter_mut()
            .find(|s| same_id(&s.id, id) && s.live_at(now))
        {
            Some(s) => {
                s.ended = Some(how);
                true
            }
            None => false,
        }
    }

    /// Removes the grants `pick` selects and revokes their access tokens: the live sessions
    /// of the same user and app. Returns how many grants went.
    pub(crate) fn revoke_grants(&mut self, pick: impl Fn(&Grant) -> bool) -> usize {
        let (gone, kept): (Vec<Grant>, Vec<Grant>) =
            std::mem::take(&mut self.grants).into_iter().partition(pick);
        self.grants = kept;
        let now = self.now();
        for g in &gone {
            for s in self
                .sessions
                .iter_mut()
                .filter(|s| s.user_id == g.user_id && s.app_key == g.app_key && s.live_at(now))
            {
                s.ended = Some(SessionEnd::Revoked);
            }
        }
        gone.len()
    }

    /// Whether `text` is some app's consumer key or consumer secret (staged ones included).
    pub(crate) fn is_app_credential(&self, text: &str) -> bool {
        self.is_staged_credential(text)
            || self.components.iter().any(|((t, _), c)| {
                let holder = match MetaType::by_name(t) {
                    Some(CONNECTED_APP) => c.element.child("oauthConfig"),
                    Some(ECA_GLOBAL) => Some(&c.element),
                    _ => None,
                };
                holder.is_some_and(|h| {
                    h.child_text("consumerKey") == Some(text)
                        || h.child_text("consumerSecret") == Some(text)
                })
            })
    }

    /// Every profile as (name, `00e…` id), in id order.
    pub(crate) fn profiles(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .profile_ids
            .iter()
            .map(|(n, id)| (n.as_str(), id.as_str()))
            .collect();
        out.sort_by_key(|(_, id)| *id);
        out
    }

    /// The permission names a profile grants.
    pub(crate) fn profile_permissions(&self, profile: &str) -> &[String] {
        self.profiles
            .get(profile)
            .map_or(&[], |p| p.permissions.as_slice())
    }

    /// The `0PS…` id of the permission set a profile owns.
    pub(crate) fn profile_permission_set_id(&self, profile: &str) -> Option<String> {
        self.profile_permission_sets.get(profile).cloned()
    }

    /// Every permission set (not owned by a profile) as (name, `0PS…` id, permissions), in id
    /// order.
    pub(crate) fn permission_sets(&self) -> Vec<(&str, &str, &[String])> {
        let mut out: Vec<(&str, &str, &[String])> = self
            .permission_sets
            .iter()
            .map(|(n, p)| {
                let id = self.permission_set_ids.get(n).map_or("", String::as_str);
                (n.as_str(), id, p.permissions.as_slice())
            })
            .collect();
        out.sort_by_key(|(_, id, _)| *id);
        out
    }

    /// `00e…` id of a profile.
    pub(crate) fn profile_id(&self, name: &str) -> Option<&str> {
        self.profile_ids.get(name).map(String::as_str)
    }

    /// Profile-level session timeout.
    pub(crate) fn profile_timeout(&self, user: &User) -> Option<u32> {
        self.profiles
            .get(&user.profile)
            .and_then(|p| p.session_timeout_minutes)
    }

    /// The live session for this token, renewed (sliding expiry) because it is being used.
    pub(crate) fn use_session(&mut self, token: &str) -> Option<Session> {
        let now = self.now();
        let session = self
            .sessions
            .iter_mut()
            .find(|s| s.token == token && s.live_at(now))?;
        session.last_used = now;
        Some(session.clone())
    }

    /// The live session of a user for an app, or a new one created by the login `login_id`
    /// (ended and timed-out sessions are never reused: a grant after a revocation gets a fresh
    /// token).
    pub(crate) fn session_for(
        &mut self,
        user_id: &str,
        app_key: &str,
        timeout_secs: i64,
        login_id: &str,
    ) -> Session {
        let now = self.now();
        if let Some(s) = self
            .sessions
            .iter_mut()
            .find(|s| s.user_id == user_id && s.app_key == app_key && s.live_at(now))
        {
            s.last_used = now;
            return s.clone();
        }
        let session = Session {
            id: self.new_id("0Ak"),
            token: format!("{}!{}", &self.org.id[..15], random_token(94, "AQ")),
            user_id: user_id.to_string(),
            app_key: app_key.to_string(),
            created: now,
            last_used: now,
            timeout_secs,
            login_history_id: login_id.to_string(),
            source_ip: self.settings.source_ip.to_string(),
            ended: None,
        };
        self.sessions.push(session.clone());
        session
    }
}

/// Puts a seed's `consumer_key`/`consumer_secret` on the element holding an app's credentials
/// (CA `oauthConfig`, ECA global settings); the XML may carry the same values, not others.
fn seed_credentials(
    holder: &mut Element,
    key: &Option<String>,
    secret: &Option<String>,
    what: &str,
) -> Result<(), String> {
    for (field, value) in [("consumerKey", key), ("consumerSecret", secret)] {
        let Some(value) = value else { continue };
        match holder.child_text(field) {
            Some(existing) if existing != value => {
                return Err(format!(
                    "{what}: the seed's {field} differs from the one in its XML"
                ));
            }
            Some(_) => {}
            None => holder.insert_in_wsdl_order(Element::with_text(field, value)),
        }
    }
    Ok(())
}
