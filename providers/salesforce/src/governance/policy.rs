//! An app's metadata records → [`OAuthApp`]: the policy values of Connected Apps
//! (`ENFORCE`, `specific_lifetime:1:DAYS`, …) and of External Client Apps (`Enforce`,
//! `SpecificLifetime` + period + unit, …) read into one vocabulary, with Salesforce's defaults for
//! absent fields (providers/salesforce/platform.md §5.7).

use super::{OAuthApp, OAuthAppKind};
use crate::xml::Element;
use rekey_api::Certificate;
use serde::Serialize;

/// IP relaxation: whether the org's and the profile's IP restrictions apply to the app's tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum IpRelaxation {
    /// Enforce IP restrictions (Salesforce's default).
    Enforce,
    /// Relax IP restrictions.
    Bypass,
    /// Relax IP restrictions with second factor.
    BypassTwoFactor,
    /// Enforce IP restrictions, but relax them for refresh tokens.
    EnforceRelaxRefresh,
    /// A value rekey does not know, as written.
    Other(String),
}

impl IpRelaxation {
    /// CA `ENFORCE`/`BYPASS`/`BYPASS_2FACTOR`/`ENFORCE_RELAXREFRESH` or ECA
    /// `Enforce`/`Bypass`/`Bypass_2factor`/`Enforce_RelaxRefresh`; absent means Enforce.
    pub(crate) fn parse(value: Option<&str>) -> Self {
        let Some(value) = value else {
            return IpRelaxation::Enforce;
        };
        match value.to_ascii_uppercase().as_str() {
            "ENFORCE" => IpRelaxation::Enforce,
            "BYPASS" => IpRelaxation::Bypass,
            "BYPASS_2FACTOR" => IpRelaxation::BypassTwoFactor,
            "ENFORCE_RELAXREFRESH" => IpRelaxation::EnforceRelaxRefresh,
            _ => IpRelaxation::Other(value.to_string()),
        }
    }
}

/// How long a refresh token stays valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum RefreshTokenPolicy {
    /// Valid until revoked (Salesforce's default).
    Infinite,
    /// Expires immediately: no usable refresh token.
    Zero,
    /// Expires `amount` `unit`s after it was issued; `unit` is `HOURS`, `DAYS` or `MONTHS`.
    Lifetime {
        /// How many units.
        amount: u32,
        /// `HOURS`, `DAYS` or `MONTHS` (upper case for both app kinds).
        unit: String,
    },
    /// Expires after `amount` `unit`s without use.
    Inactivity {
        /// How many units.
        amount: u32,
        /// `HOURS`, `DAYS` or `MONTHS`.
        unit: String,
    },
    /// A value rekey does not know, as written.
    Other(String),
}

impl RefreshTokenPolicy {
    /// A Connected App's `oauthPolicy/refreshTokenPolicy`: `infinite`, `zero`,
    /// `specific_lifetime:<n>:<UNIT>`, `specific_inactivity:<n>:<UNIT>`; absent means infinite.
    pub(crate) fn parse_connected_app(value: Option<&str>) -> Self {
        let Some(value) = value else {
            return RefreshTokenPolicy::Infinite;
        };
        let mut parts = value.split(':');
        let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (amount, unit) = (parts.next(), parts.next());
        match (kind.as_str(), amount, unit, parts.next()) {
            ("infinite", None, ..) => RefreshTokenPolicy::Infinite,
            ("zero", None, ..) => RefreshTokenPolicy::Zero,
            (kind, Some(amount), Some(unit), None) => {
                Self::specific(kind, Some(amount), Some(unit)).unwrap_or_else(|| Self::other(value))
            }
            _ => Self::other(value),
        }
    }

    /// An ECA's `refreshTokenPolicyType` (`Infinite`, `Zero`, `SpecificLifetime`,
    /// `SpecificInactivity`) with `refreshTokenValidityPeriod` and `refreshTokenValidityUnit`;
    /// absent means Infinite.
    pub(crate) fn parse_eca(kind: Option<&str>, period: Option<&str>, unit: Option<&str>) -> Self {
        let Some(kind) = kind else {
            return RefreshTokenPolicy::Infinite;
        };
        match kind.to_ascii_lowercase().as_str() {
            "infinite" => Some(RefreshTokenPolicy::Infinite),
            "zero" => Some(RefreshTokenPolicy::Zero),
            "specificlifetime" => Self::specific("specific_lifetime", period, unit),
            "specificinactivity" => Self::specific("specific_inactivity", period, unit),
            _ => None,
        }
        .unwrap_or_else(|| Self::other(kind))
    }

    fn specific(kind: &str, amount: Option<&str>, unit: Option<&str>) -> Option<Self> {
        let amount: u32 = amount?.trim().parse().ok()?;
        let unit = unit?.trim().to_ascii_uppercase();
        if !matches!(unit.as_str(), "HOURS" | "DAYS" | "MONTHS") {
            return None;
        }
        match kind {
            "specific_lifetime" => Some(RefreshTokenPolicy::Lifetime { amount, unit }),
            "specific_inactivity" => Some(RefreshTokenPolicy::Inactivity { amount, unit }),
            _ => None,
        }
    }

    fn other(value: &str) -> Self {
        RefreshTokenPolicy::Other(value.to_string())
    }
}

/// The scope names of the metadata schema (`ConnectedApp` `scopes`, which ECA scope lists use
/// too), in their canonical spelling.
const SCOPES: &[&str] = &[
    "Address",
    "Api",
    "Basic",
    "CDP",
    "CDPCalculatedInsight",
    "CDPIdentityResolution",
    "CDPIngest",
    "CDPProfile",
    "CDPQuery",
    "CDPSegment",
    "Chatbot",
    "Chatter",
    "Content",
    "CustomApplications",
    "CustomPermissions",
    "DataCloudUserClaims",
    "Eclair",
    "EinsteinGPT",
    "Email",
    "ForgotPassword",
    "Full",
    "Interaction",
    "Lightning",
    "MCP",
    "OfflineAccess",
    "OpenID",
    "Pardot",
    "Phone",
    "Profile",
    "PwdlessLogin",
    "RefreshToken",
    "SCRT",
    "SFAP",
    "UserRegistration",
    "Wave",
    "Web",
];

/// Canonical scope names: known names in their schema spelling, the deploy-time synonyms
/// folded (`OfflineAccess` → `RefreshToken`; `Profile`, `Email`, `Address`, `Phone` → `Basic`),
/// unknown names kept as written; sorted and deduplicated.
pub(crate) fn canonical_scopes<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            let known = SCOPES.iter().find(|s| s.eq_ignore_ascii_case(n)).copied();
            match known {
                Some("OfflineAccess") => "RefreshToken".to_string(),
                Some("Profile" | "Email" | "Address" | "Phone") => "Basic".to_string(),
                Some(s) => s.to_string(),
                None => n.to_string(),
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A comma-separated metadata list (`commaSeparatedOauthScopes`, `commaSeparatedProfile`),
/// trimmed, empty items dropped.
fn comma_list(text: Option<String>) -> Vec<String> {
    text.map(|t| {
        t.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

/// Every child `name` of `parent`, trimmed, empty ones dropped.
fn texts(parent: Option<&Element>, name: &str) -> Vec<String> {
    parent
        .into_iter()
        .flat_map(|p| p.elements())
        .filter(|e| e.name == name)
        .map(|e| e.text().trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// A boolean field; `default` when absent or unreadable.
fn flag(holder: Option<&Element>, name: &str, default: bool) -> bool {
    match holder.and_then(|h| h.text_at(&[name])) {
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        _ => default,
    }
}

fn text(holder: Option<&Element>, path: &[&str]) -> Option<String> {
    holder.and_then(|h| h.text_at(path))
}

/// The certificate text read, parsed: one app's unreadable certificate is reported on that app,
/// never fails the whole read.
fn certificate(text: Option<String>) -> (Option<Certificate>, Option<String>) {
    match text.map(|t| Certificate::from_pem(&t)) {
        None => (None, None),
        Some(Ok(c)) => (Some(c), None),
        Some(Err(e)) => (None, Some(e.to_string())),
    }
}

/// A Connected App from its `ConnectedApp` record.
pub(crate) fn connected_app(name: &str, record: &Element) -> OAuthApp {
    let oauth = record.child("oauthConfig");
    let oauth_policy = record.child("oauthPolicy");
    let (certificate, certificate_problem) = certificate(text(oauth, &["certificate"]));
    let scopes = texts(oauth, "scopes");
    OAuthApp {
        kind: OAuthAppKind::ConnectedApp,
        name: name.to_string(),
        label: record
            .text_at(&["label"])
            .unwrap_or_else(|| name.to_string()),
        consumer_key: text(oauth, &["consumerKey"]),
        callback_url: text(oauth, &["callbackUrl"]),
        scopes: canonical_scopes(scopes.iter().map(String::as_str)),
        admin_approved: flag(oauth, "isAdminApproved", false),
        profiles: texts(Some(record), "profileName"),
        permission_sets: texts(Some(record), "permissionSetName"),
        ip_relaxation: IpRelaxation::parse(text(oauth_policy, &["ipRelaxation"]).as_deref()),
        refresh_token: RefreshTokenPolicy::parse_connected_app(
            text(oauth_policy, &["refreshTokenPolicy"]).as_deref(),
        ),
        pkce_required: flag(oauth, "isPkceRequired", false),
        consumer_secret_optional: flag(oauth, "isConsumerSecretOptional", false),
        secret_required_for_refresh: flag(oauth, "isSecretRequiredForRefreshToken", true),
        high_assurance: text(Some(record), &["sessionPolicy", "sessionLevel"])
            .is_some_and(|l| l.eq_ignore_ascii_case("HIGH_ASSURANCE")),
        client_credentials_enabled: flag(oauth, "isClientCredentialEnabled", false),
        client_credentials_user: text(oauth, &["oauthClientCredentialUser"]),
        introspect_all_tokens: flag(oauth, "isIntrospectAllTokens", false),
        oauth_enabled: true,
        certificate,
        certificate_problem,
    }
}

/// The records of one External Client App: its header and whichever satellites it has.
#[derive(Default)]
pub(crate) struct EcaRecords {
    pub(crate) header: Option<Element>,
    pub(crate) oauth_settings: Option<Element>,
    pub(crate) global_oauth: Option<Element>,
    pub(crate) oauth_policies: Option<Element>,
    pub(crate) policies: Option<Element>,
}

/// An External Client App from its records.
pub(crate) fn external_client_app(name: &str, r: &EcaRecords) -> OAuthApp {
    let global = r.global_oauth.as_ref();
    let policies = r.oauth_policies.as_ref();
    let (certificate, certificate_problem) = certificate(text(global, &["certificate"]));
    let scopes = comma_list(text(
        r.oauth_settings.as_ref(),
        &["commaSeparatedOauthScopes"],
    ));
    OAuthApp {
        kind: OAuthAppKind::ExternalClientApp,
        name: name.to_string(),
        label: text(r.header.as_ref(), &["label"]).unwrap_or_else(|| name.to_string()),
        consumer_key: text(global, &["consumerKey"]),
        callback_url: text(global, &["callbackUrl"])
            .or_else(|| text(r.oauth_settings.as_ref(), &["callbackUrl"])),
        scopes: canonical_scopes(scopes.iter().map(String::as_str)),
        admin_approved: text(policies, &["permittedUsersPolicyType"])
            .is_some_and(|p| p.eq_ignore_ascii_case("AdminApprovedPreAuthorized")),
        profiles: comma_list(text(policies, &["commaSeparatedProfile"])),
        permission_sets: comma_list(text(policies, &["commaSeparatedPermissionSet"])),
        ip_relaxation: IpRelaxation::parse(text(policies, &["ipRelaxationPolicyType"]).as_deref()),
        refresh_token: RefreshTokenPolicy::parse_eca(
            text(policies, &["refreshTokenPolicyType"]).as_deref(),
            text(policies, &["refreshTokenValidityPeriod"]).as_deref(),
            text(policies, &["refreshTokenValidityUnit"]).as_deref(),
        ),
        // Unlike a Connected App's, an ECA's PKCE switch defaults to on.
        pkce_required: flag(global, "isPkceRequired", true),
        consumer_secret_optional: flag(global, "isConsumerSecretOptional", false),
        secret_required_for_refresh: flag(global, "isSecretRequiredForRefreshToken", true),
        high_assurance: text(policies, &["requiredSessionLevel"])
            .is_some_and(|l| l.eq_ignore_ascii_case("HIGH_ASSURANCE")),
        // The flow runs only when the developer settings and the admin policy both allow it.
        client_credentials_enabled: flag(global, "isClientCredentialsFlowEnabled", false)
            && flag(policies, "isClientCredentialsFlowEnabled", false),
        client_credentials_user: text(policies, &["clientCredentialsFlowUser"]),
        introspect_all_tokens: flag(global, "isIntrospectAllTokens", false),
        // No plugin-switch component: OAuth is on, as for a freshly created ECA.
        oauth_enabled: flag(r.policies.as_ref(), "isOauthPluginEnabled", true),
        certificate,
        certificate_problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml;

    #[test]
    fn policy_values_of_both_kinds_read_alike() {
        for (ca, eca, want) in [
            ("ENFORCE", "Enforce", IpRelaxation::Enforce),
            ("BYPASS", "bypass", IpRelaxation::Bypass),
            (
                "BYPASS_2FACTOR",
                "Bypass_2factor",
                IpRelaxation::BypassTwoFactor,
            ),
            (
                "ENFORCE_RELAXREFRESH",
                "Enforce_RelaxRefresh",
                IpRelaxation::EnforceRelaxRefresh,
            ),
        ] {
            assert_eq!(IpRelaxation::parse(Some(ca)), want);
            assert_eq!(IpRelaxation::parse(Some(eca)), want);
        }
        assert_eq!(IpRelaxation::parse(None), IpRelaxation::Enforce);
        assert_eq!(
            IpRelaxation::parse(Some("X")),
            IpRelaxation::Other("X".into())
        );

        let days = |amount| RefreshTokenPolicy::Lifetime {
            amount,
            unit: "DAYS".into(),
        };
        assert_eq!(
            RefreshTokenPolicy::parse_connected_app(None),
            RefreshTokenPolicy::Infinite
        );
        assert_eq!(
            RefreshTokenPolicy::parse_connected_app(Some("zero")),
            RefreshTokenPolicy::Zero
        );
        assert_eq!(
            RefreshTokenPolicy::parse_connected_app(Some("specific_lifetime:1:DAYS")),
            days(1)
        );
        assert_eq!(
            RefreshTokenPolicy::parse_connected_app(Some("specific_inactivity:3:HOURS")),
            RefreshTokenPolicy::Inactivity {
                amount: 3,
                unit: "HOURS".into()
            }
        );
        for bad in [
            "specific_lifetime:x:DAYS",
            "specific_lifetime:1:WEEKS",
            "immediately",
            "zero:1",
        ] {
            assert_eq!(
                RefreshTokenPolicy::parse_connected_app(Some(bad)),
                RefreshTokenPolicy::Other(bad.into())
            );
        }
        assert_eq!(
            RefreshTokenPolicy::parse_eca(None, None, None),
            RefreshTokenPolicy::Infinite
        );
        assert_eq!(
            RefreshTokenPolicy::parse_eca(Some("Zero"), None, None),
            RefreshTokenPolicy::Zero
        );
        assert_eq!(
            RefreshTokenPolicy::parse_eca(Some("SpecificLifetime"), Some("1"), Some("Days")),
            days(1)
        );
        assert_eq!(
            RefreshTokenPolicy::parse_eca(Some("SpecificInactivity"), None, Some("Days")),
            RefreshTokenPolicy::Other("SpecificInactivity".into())
        );
    }

    #[test]
    fn scopes_are_canonical() {
        assert_eq!(
            canonical_scopes([
                "offlineaccess",
                "Api",
                " Email",
                "Profile",
                "RefreshToken",
                "custom_x"
            ]),
            ["Api", "Basic", "RefreshToken", "custom_x"]
        );
        assert_eq!(
            comma_list(Some("Api, RefreshToken,,".into())),
            ["Api", "RefreshToken"]
        );
    }

    #[test]
    fn defaults_apply_and_a_bad_certificate_is_reported_on_the_app() {
        let ca = xml::parse(
            "<records><fullName>A</fullName><oauthConfig><certificate>not a cert</certificate>\
             <scopes>Full</scopes><scopes>OfflineAccess</scopes></oauthConfig></records>",
        )
        .unwrap();
        let app = connected_app("A", &ca);
        assert_eq!(app.label, "A");
        assert_eq!(app.scopes, ["Full", "RefreshToken"]);
        assert_eq!(app.refresh_token, RefreshTokenPolicy::Infinite);
        assert!(app.secret_required_for_refresh && !app.pkce_required && app.oauth_enabled);
        assert!(app.certificate.is_none() && app.certificate_problem.is_some());

        let eca = external_client_app("E", &EcaRecords::default());
        assert!(eca.pkce_required && eca.oauth_enabled && !eca.admin_approved);
        assert!(eca.certificate.is_none() && eca.certificate_problem.is_none());
        assert_eq!(eca.ip_relaxation, IpRelaxation::Enforce);
    }
}
