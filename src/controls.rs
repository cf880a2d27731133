//! The audit's catalogue: every finding `rekey audit` can report, with the control it implements
//! and what to change. One definition: the audit's rules, config validation of `[[audit.ignore]]`
//! ids, SARIF's rule list, the README table and the hardening runbook all read this list.
//!
//! Controls cite the Security Benchmark for Salesforce (`SBS-…`, docs.securitybenchmark.org) where
//! it has one; the others are items of rekey's own hardening checklist (`HC-…`), each explained
//! with its public sources in `runbooks/hardening-review.md`.

use rekey_api::Severity;

/// One kind of finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// Stable kebab-case id: what suppressions, SARIF rules and alerts key on.
    pub id: &'static str,
    /// The severity it is reported with, unless a rule says otherwise for a worse case.
    pub severity: Severity,
    /// The control it implements.
    pub control: &'static str,
    /// One line: what is wrong when it fires.
    pub title: &'static str,
    /// The condition, as the README states it.
    pub condition: &'static str,
    /// What to change, where in Setup or which metadata field.
    pub remediation: &'static str,
}

/// Every finding, in the order reports list them.
pub const CONTROLS: &[Control] = &[
    Control {
        id: "scope-full",
        severity: Severity::Warning,
        control: "HC-1 least-privilege OAuth scopes",
        title: "the app grants the full scope",
        condition: "the app's OAuth scopes include Full (full): every token it issues can do everything its user can, refresh included",
        remediation: "grant only what the integration calls (usually Api): Setup → App Manager → the app → Edit → Selected OAuth Scopes; metadata ConnectedApp oauthConfig/scopes or ExtlClntAppOauthSettings commaSeparatedOauthScopes",
    },
    Control {
        id: "refresh-token-infinite",
        severity: Severity::Warning,
        control: "HC-2 bounded refresh tokens",
        title: "refresh tokens never expire",
        condition: "the app grants the RefreshToken (refresh_token, offline_access) scope and its refresh token policy is Infinite (\"valid until revoked\", also the default when unset)",
        remediation: "expire refresh tokens: Manage Connected Apps → Edit Policies → Refresh Token Policy = expire if not used for N days; metadata oauthPolicy/refreshTokenPolicy specific_inactivity:N:DAYS, or ECA refreshTokenPolicyType SpecificInactivity with refreshTokenValidityPeriod N and refreshTokenValidityUnit Days",
    },
    Control {
        id: "self-authorize",
        severity: Severity::Warning,
        control: "SBS-OAUTH-001 access through profiles and permission sets",
        title: "all users may self-authorize",
        condition: "Permitted Users is \"All users may self-authorize\"; critical when the app also holds a JWT certificate (whoever holds the key can mint tokens for any user who ever approved the app)",
        remediation: "Manage Connected Apps → Edit Policies → Permitted Users = Admin approved users are pre-authorized, then assign the profiles or permission sets; metadata oauthConfig/isAdminApproved true, or ECA permittedUsersPolicyType AdminApprovedPreAuthorized",
    },
    Control {
        id: "ip-relaxed",
        severity: Severity::Warning,
        control: "HC-3 IP restrictions enforced for server-to-server apps",
        title: "IP restrictions are relaxed on a server-to-server app",
        condition: "the app is used by a server-to-server flow (a JWT certificate or client credentials) and its IP Relaxation is anything but Enforce IP restrictions",
        remediation: "servers have fixed egress addresses: Edit Policies → IP Relaxation = Enforce IP restrictions, with the servers' ranges on the run-as user's profile; metadata oauthPolicy/ipRelaxation ENFORCE, or ECA ipRelaxationPolicyType Enforce",
    },
    Control {
        id: "pkce-with-required-secret",
        severity: Severity::Warning,
        control: "HC-4 PKCE or a secret, as the client can keep",
        title: "PKCE is required together with a required consumer secret",
        condition: "the app has a callback URL (authorization code flow), requires PKCE and also requires the consumer secret for the web server flow: the token exchange fails at run time for public clients",
        remediation: "public clients (mobile, SPA, CLI): keep PKCE and set Require Secret for Web Server Flow off (ConnectedApp oauthConfig/isConsumerSecretOptional or ECA ExtlClntAppGlobalOauthSettings isConsumerSecretOptional true); confidential clients: keep the secret and make sure they send the PKCE verifier too",
    },
    Control {
        id: "high-assurance-not-required",
        severity: Severity::Info,
        control: "HC-5 high-assurance sessions for interactive API access",
        title: "interactive API access without a high-assurance session",
        condition: "the app grants Api or Full to tokens obtained interactively (no JWT certificate, no client credentials) and its session level policy does not require High Assurance; server-to-server apps are exempt, as High Assurance blocks JWT bearer and client credentials",
        remediation: "Edit Policies → Session Policies → High assurance session required, action Switch to high assurance (step-up MFA); metadata sessionPolicy/sessionLevel HIGH_ASSURANCE with policyAction RaiseSessionLevel, or ECA requiredSessionLevel HIGH_ASSURANCE",
    },
    Control {
        id: "client-credentials-enabled",
        severity: Severity::Warning,
        control: "HC-6 client credentials only with a rotated secret",
        title: "the client credentials flow is on and nobody rotates the secret",
        condition: "the app enables the client credentials flow (its consumer key and secret alone get a token) and no consumer_secret credential in rekey.toml rotates that app's secret",
        remediation: "External Client Apps: add [credentials.NAME] kind = \"consumer_secret\" and `rekey import NAME`; Connected Apps (Salesforce offers no API to rotate their secret): move the integration to an External Client App, or rotate the secret in Setup on a schedule and suppress with the reason; or turn the flow off if nothing uses it (ConnectedApp oauthConfig/isClientCredentialEnabled, ECA isClientCredentialsFlowEnabled)",
    },
    Control {
        id: "client-credentials-privileged-user",
        severity: Severity::Critical,
        control: "HC-7 narrow client credentials run-as user",
        title: "the client credentials run-as user is privileged",
        condition: "the client credentials run-as user holds Modify All Data, View All Data, Modify Metadata or Manage Users (through its profile or a permission set): whoever has the consumer secret has that power",
        remediation: "run as an API-only integration user with only the object permissions the job needs: Edit Policies → Client Credentials Flow → Run As; metadata oauthConfig/oauthClientCredentialUser or ECA clientCredentialsFlowUser",
    },
    Control {
        id: "certificate-expiring",
        severity: Severity::Warning,
        control: "HC-8 certificate lifecycle",
        title: "the app's JWT certificate expires soon",
        condition: "the app's JWT certificate expires within [audit] certificate_warn_days (default 30); Salesforce keeps accepting it afterwards, but auditors and scanners do not",
        remediation: "rotate it: `rekey rotate CRED` for a managed app, or add a credential for it (see unmanaged-certificate)",
    },
    Control {
        id: "certificate-expired",
        severity: Severity::Critical,
        control: "HC-8 certificate lifecycle",
        title: "the app's JWT certificate has expired",
        condition: "the app's JWT certificate's notAfter has passed",
        remediation: "rotate it now: `rekey rotate CRED` (managed) or `rekey import` then `rekey rotate` (unmanaged)",
    },
    Control {
        id: "certificate-weak-key",
        severity: Severity::Critical,
        control: "HC-9 key strength",
        title: "the app's JWT certificate has a weak key",
        condition: "the app's JWT certificate carries an RSA key below 2048 bits",
        remediation: "rotate to a 2048-bit or larger key: `rekey rotate CRED` generates RSA-2048 by default (key_algorithm = \"rsa-3072\" or \"rsa-4096\" in [credentials.NAME] for more)",
    },
    Control {
        id: "unmanaged-certificate",
        severity: Severity::Warning,
        control: "SBS-OAUTH-002 inventory of OAuth apps",
        title: "a JWT certificate no credential rotates",
        condition: "the app holds a JWT certificate and no credential in rekey.toml names the app: a rotation nobody runs",
        remediation: "add [credentials.NAME] for the app (app_kind, app, username) and `rekey import NAME --key KEY --cert CERT` with the key its integration uses; or remove the certificate if nothing uses it",
    },
    Control {
        id: "consumer-secret-age",
        severity: Severity::Warning,
        control: "HC-6 client credentials only with a rotated secret",
        title: "the consumer secret is old",
        condition: "a consumer_secret credential's CURRENT pair was stored (rotated or imported) more than [audit] consumer_secret_max_age_days ago (default 90)",
        remediation: "`rekey rotate CRED`, then `rekey retire CRED` once every consumer moved",
    },
    Control {
        id: "stale-oauth-grants",
        severity: Severity::Warning,
        control: "HC-10 no dormant OAuth grants",
        title: "OAuth grants unused for a long time",
        condition: "the app has OAuth grants (OauthToken rows: refresh tokens users approved) not used for [audit] stale_after_days (default 30)",
        remediation: "`rekey grants --app APP --stale-after-days N --revoke` (dry run without --revoke), or in Setup: Connected Apps OAuth Usage (External Client Apps: External Client App Manager → OAuth Usage) → the app → Revoke",
    },
    Control {
        id: "unused-app",
        severity: Severity::Info,
        control: "SBS-OAUTH-002 inventory of OAuth apps",
        title: "nobody logged in through the app for a long time",
        condition: "no successful login through the app in LoginHistory in the last [audit] unused_after_days (default 90; Salesforce keeps six months)",
        remediation: "confirm with its owner, then turn OAuth off for it or delete it (Setup → App Manager); an unused app with a credential is an open door",
    },
    Control {
        id: "clock-skew",
        severity: Severity::Warning,
        control: "HC-11 NTP-synced JWT signers",
        title: "this host's clock is off from Salesforce's",
        condition: "this host's clock differs from Salesforce's Date header by more than [audit] clock_skew_secs (default 30; critical beyond 60), measured less its uncertainty; a signer whose clock drifts further gets an unhelpful invalid_grant from JWT bearer once its exp falls outside what Salesforce accepts, and the finding comes well before that",
        remediation: "sync the clock with NTP (chrony, systemd-timesyncd) on every host that signs assertions: rekey, and every consumer running `rekey token`",
    },
    Control {
        id: "no-owner",
        severity: Severity::Warning,
        control: "SBS-OAUTH-002 inventory of OAuth apps",
        title: "a managed credential has no owner",
        condition: "a credential in rekey.toml has no owner: nobody to ask before a rotation or after a leak",
        remediation: "set owner = \"team or person\" in [credentials.NAME]",
    },
    Control {
        id: "suppression-without-reason",
        severity: Severity::Warning,
        control: "SBS-FDNS-001 system of record for exceptions",
        title: "a suppression gives no reason",
        condition: "an [[audit.ignore]] entry has no reason; it still suppresses, but an exception without a justification is itself a finding",
        remediation: "add reason = \"why this is accepted, and who accepted it\" to the entry",
    },
    Control {
        id: "suppression-expired",
        severity: Severity::Warning,
        control: "SBS-FDNS-001 system of record for exceptions",
        title: "a suppression is past its date",
        condition: "an [[audit.ignore]] entry's until date has passed; it no longer suppresses",
        remediation: "fix what it suppressed, or review the exception and move until forward",
    },
];

/// The catalogue entry for `id`.
pub fn control(id: &str) -> Option<&'static Control> {
    CONTROLS.iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case_and_every_entry_is_filled_in() {
        let mut seen = std::collections::BTreeSet::new();
        for c in CONTROLS {
            assert!(seen.insert(c.id), "{} twice", c.id);
            assert!(
                c.id.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'),
                "{} is not kebab-case",
                c.id
            );
            for text in [c.control, c.title, c.condition, c.remediation] {
                assert!(!text.is_empty() && !text.contains('\n'), "{}", c.id);
            }
        }
        assert_eq!(control("scope-full").map(|c| c.id), Some("scope-full"));
        assert_eq!(control("nope"), None);
    }
}
