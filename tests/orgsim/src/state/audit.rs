//! The `SetupAuditTrail` rows a deployed component change makes, with the actions, sections and
//! display texts Salesforce records for Connected Apps. Salesforce does not document rows for
//! External Client Apps; a certificate change on one is recorded like a Connected App's.

use super::*;

/// A setting's text in an audit row (`null` when unset, as Salesforce prints it).
fn shown(value: Option<&str>) -> String {
    value.unwrap_or("null").to_string()
}

/// The IP relaxation names of the app's setup page.
fn ip_relaxation_label(value: Option<&str>) -> &'static str {
    match value.unwrap_or("ENFORCE") {
        "BYPASS" => "Relax IP restrictions",
        "BYPASS_2FACTOR" => "Relax IP restrictions with second factor",
        "ENFORCE_RELAXREFRESH" => "Enforce IP restrictions, but relax for refresh tokens",
        _ => "Enforce IP restrictions",
    }
}

fn permitted_users_label(admin_approved: bool) -> &'static str {
    if admin_approved {
        "Admin approved users are pre-authorized"
    } else {
        "All users may self-authorize"
    }
}

impl OrgState {
    /// Records the audit rows for storing `new` as component `member` of `kind` over
    /// `previous`, changed by `by`.
    pub(crate) fn audit_change(
        &mut self,
        kind: MetaType,
        member: &str,
        previous: Option<&Element>,
        new: &Element,
        by: &str,
    ) {
        let cert_of = |e: &Element| {
            certificate(e, kind)
                .and_then(|t| Cert::parse(t).ok())
                .map(|c| c.subject())
        };
        let (old_cert, new_cert) = (previous.and_then(cert_of), cert_of(new));
        if matches!(kind, CONNECTED_APP | ECA_GLOBAL) {
            match (&old_cert, &new_cert) {
                (None, Some(n)) => self.audit(
                    by,
                    "insertApplicationCertificate",
                    "Remote Access",
                    format!("Created Connected App Certificate {n}"),
                ),
                (Some(o), Some(n))
                    if previous.map(|p| certificate(p, kind)) != Some(certificate(new, kind)) =>
                {
                    self.audit(
                        by,
                        "changeApplicationCertificate",
                        "Remote Access",
                        format!("Changed Connected App Certificate from {o} to {n}"),
                    )
                }
                _ => {}
            }
        }
        if kind != CONNECTED_APP {
            return;
        }
        let label = new.child_text("label").unwrap_or(member).to_string();
        let Some(previous) = previous else {
            self.audit(
                by,
                "insertApplication",
                "Application",
                format!("Created Connected App {label}"),
            );
            return;
        };
        let oauth = |e: &Element| {
            e.child("oauthConfig")
                .cloned()
                .unwrap_or_else(|| Element::new("oauthConfig"))
        };
        let (old, now) = (oauth(previous), oauth(new));
        let text = |e: &Element, f: &str| e.child_text(f).map(str::to_string);
        let flag = |e: &Element, f: &str, default: bool| e.child_bool(f).unwrap_or(default);

        if text(&old, "callbackUrl") != text(&now, "callbackUrl") {
            self.audit(
                by,
                "changeApplicationCallbackUrl",
                "Application",
                format!(
                    "Changed Connected App Callback URL from {} to {}",
                    shown(old.child_text("callbackUrl")),
                    shown(now.child_text("callbackUrl"))
                ),
            );
        }
        let scopes = |e: &Element| {
            let tokens = scope_tokens(&e.child_texts("scopes"));
            if tokens.is_empty() {
                "null".to_string()
            } else {
                tokens.join(", ")
            }
        };
        if scopes(&old) != scopes(&now) {
            self.audit(
                by,
                "changeOauthDefaultScope",
                "Application",
                format!(
                    "Changed connected app {label} scopes from {} to {}",
                    scopes(&old),
                    scopes(&now)
                ),
            );
        }
        let relaxation = |e: &Element| {
            e.child("oauthPolicy")
                .and_then(|p| p.child_text("ipRelaxation"))
                .map(str::to_string)
        };
        if relaxation(previous) != relaxation(new) {
            self.audit(
                by,
                "changeIpRelaxationPolicy",
                "Application",
                format!(
                    "Changed connected app {label} IP relaxation setting from {} to {}",
                    ip_relaxation_label(relaxation(previous).as_deref()),
                    ip_relaxation_label(relaxation(new).as_deref())
                ),
            );
        }
        let (was, is) = (
            flag(&old, "isAdminApproved", false),
            flag(&now, "isAdminApproved", false),
        );
        if was != is {
            self.audit(
                by,
                "changeUserRuntimeAccessPolicy",
                "Application",
                format!(
                    "Changed connected app {label} Permitted Users setting from {} to {}",
                    permitted_users_label(was),
                    permitted_users_label(is)
                ),
            );
        }
        let flags: [(&str, bool, &str, String); 4] = [
            (
                "isPkceRequired",
                false,
                "changeApplicationPkceRequired",
                format!(
                    "Changed the {label} connected app setting Require Proof Key for Code Exchange (PKCE) Extension for Supported Authorization Flows"
                ),
            ),
            (
                "isClientCredentialEnabled",
                false,
                "changeApplicationClientCredentialEnabled",
                "Changed Enable Client Credentials Flow".to_string(),
            ),
            (
                "isSecretRequiredForRefreshToken",
                true,
                "changeApplicationSecretRequiredForRefreshToken",
                "Changed the connected app's Require Secret for Refresh Token Flow setting"
                    .to_string(),
            ),
            (
                "isConsumerSecretOptional",
                false,
                "changeApplicationOptionalConsumerSecret",
                "Changed connected app Require Secret for Web Server Flow OAuth setting"
                    .to_string(),
            ),
        ];
        for (field, default, action, display) in flags {
            let (was, is) = (flag(&old, field, default), flag(&now, field, default));
            if was == is {
                continue;
            }
            // The setup page asks whether the secret is required, the metadata whether it is
            // optional.
            let (was, is) = if field == "isConsumerSecretOptional" {
                (!was, !is)
            } else {
                (was, is)
            };
            self.audit(
                by,
                action,
                "Application",
                format!("{display} from {was} to {is}"),
            );
        }
        let cc_user = |e: &Element| text(e, "oauthClientCredentialUser");
        if let Some(user) = cc_user(&now).filter(|u| Some(u) != cc_user(&old).as_ref()) {
            let user_id = self
                .user_by_username(&user)
                .map(|u| u.id.clone())
                .unwrap_or_default();
            let app_id = self
                .component(CONNECTED_APP, member)
                .map(|c| c.id.clone())
                .unwrap_or_default();
            self.audit(
                by,
                "addOauthClientCredentialUser",
                "OAuth Client Credentials User",
                format!(
                    "Assigned OAuth client credentials user {user} (UserID: [{user_id}]) to app {label} (AppID: [{app_id}])"
                ),
            );
        }
    }
}
