//! The org's apps as metadata components: Connected Apps and External Client Apps with their
//! satellites, the certificates each trusts (and has trusted), checking and installing a deployed
//! component, and the consumer credentials that settle with it.

use super::*;

impl OrgState {
    /// The stored component.
    pub(crate) fn component(&self, kind: MetaType, member: &str) -> Option<&Component> {
        self.components
            .get(&(kind.name.to_string(), member.to_string()))
    }

    /// The ECA satellite of this type that points at `eca`.
    pub(crate) fn satellite(&self, kind: MetaType, eca: &str) -> Option<(&str, &Component)> {
        self.components
            .iter()
            .filter(|((t, _), _)| t == kind.name)
            .find(|(_, c)| c.element.child_text("externalClientApplication") == Some(eca))
            .map(|((_, m), c)| (m.as_str(), c))
    }

    /// The app view for a ConnectedApp or ECA name (ConnectedApp first).
    pub(crate) fn app_by_name(&self, name: &str) -> Option<AppView> {
        self.app_view(CONNECTED_APP, name)
            .or_else(|| self.app_view(ECA, name))
    }

    /// The app whose consumer key is `key`.
    pub(crate) fn app_by_consumer_key(&self, key: &str) -> Option<AppView> {
        self.components.iter().find_map(|((t, m), c)| {
            let found = match MetaType::by_name(t)? {
                CONNECTED_APP => (consumer_key(&c.element, CONNECTED_APP)? == key)
                    .then(|| (CONNECTED_APP, m.clone())),
                ECA_GLOBAL => (consumer_key(&c.element, ECA_GLOBAL)? == key).then(|| {
                    (
                        ECA,
                        c.element
                            .child_text("externalClientApplication")
                            .unwrap_or_default()
                            .to_string(),
                    )
                }),
                _ => None,
            }?;
            self.app_view(found.0, &found.1)
        })
    }

    /// Assembles the token-relevant view of an app.
    pub(crate) fn app_view(&self, kind: MetaType, name: &str) -> Option<AppView> {
        if kind == CONNECTED_APP {
            let e = &self.component(CONNECTED_APP, name)?.element;
            let oauth = e.child("oauthConfig");
            let scopes = oauth.map(|o| o.child_texts("scopes")).unwrap_or_default();
            return Some(AppView {
                kind,
                name: name.to_string(),
                certificate: oauth
                    .and_then(|o| o.child_text("certificate"))
                    .map(str::to_string),
                admin_approved: oauth
                    .and_then(|o| o.child_bool("isAdminApproved"))
                    .unwrap_or(false),
                profiles: e.child_texts("profileName"),
                permission_sets: e.child_texts("permissionSetName"),
                session_timeout_minutes: e
                    .child("sessionPolicy")
                    .and_then(|p| p.child_text("sessionTimeout"))
                    .and_then(|t| t.parse().ok()),
                oauth_enabled: true,
                scope: token_scope(&scopes),
            });
        }
        self.component(ECA, name)?;
        let sat = |k: MetaType| self.satellite(k, name).map(|(_, c)| &c.element);
        let policies = sat(ECA_OAUTH_POLICIES);
        let comma = |field: &str| {
            policies
                .and_then(|p| p.child_text(field))
                .map(|t| {
                    t.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let scopes: Vec<String> = sat(ECA_OAUTH)
            .and_then(|o| o.child_text("commaSeparatedOauthScopes"))
            .map(|t| t.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        Some(AppView {
            kind,
            name: name.to_string(),
            certificate: sat(ECA_GLOBAL)
                .and_then(|g| g.child_text("certificate"))
                .map(str::to_string),
            admin_approved: policies.and_then(|p| p.child_text("permittedUsersPolicyType"))
                == Some("AdminApprovedPreAuthorized"),
            profiles: comma("commaSeparatedProfile"),
            permission_sets: comma("commaSeparatedPermissionSet"),
            session_timeout_minutes: policies
                .and_then(|p| p.child_text("sessionTimeoutInMinutes"))
                .and_then(|t| t.parse().ok()),
            // Without a policies component the OAuth plugin is on, as for a freshly created ECA.
            oauth_enabled: sat(ECA_POLICIES)
                .and_then(|p| p.child_bool("isOauthPluginEnabled"))
                .unwrap_or(true),
            scope: token_scope(&scopes),
        })
    }

    /// Every certificate the app has held, oldest first (just the current one if it never
    /// changed).
    pub(crate) fn certificate_history(&self, app: &AppView) -> Vec<Cert> {
        match self.cert_history.get(&app.key()) {
            Some(history) => history.clone(),
            None => app
                .certificate
                .as_deref()
                .and_then(|t| Cert::parse(t).ok())
                .into_iter()
                .collect(),
        }
    }

    /// Certificates the token endpoint trusts for this app right now, honouring the
    /// propagation window after the latest certificate change.
    pub(crate) fn trusted_certs(&self, app: &AppView) -> Vec<Cert> {
        let current: Option<Cert> = app.certificate.as_deref().and_then(|t| Cert::parse(t).ok());
        let change = self.cert_changes.get(&app.key());
        let window_ms = (self.settings.propagation_secs as i64).saturating_mul(1000);
        let in_window = change.is_some_and(|c| self.now_ms() < c.at_ms.saturating_add(window_ms));
        let old = change.and_then(|c| c.old.clone());
        let certs = match (in_window, self.settings.propagation_mode) {
            (false, _) | (true, PropagationMode::New) => vec![current],
            (true, PropagationMode::Old) => vec![old],
            (true, PropagationMode::Either) => vec![current, old],
            (true, PropagationMode::Neither) => vec![],
            (true, PropagationMode::Random) => {
                if rand::rng().random_bool(0.5) {
                    vec![current]
                } else {
                    vec![old]
                }
            }
        };
        certs.into_iter().flatten().collect()
    }

    /// Validation a component must pass before it is stored. `pending` holds the other
    /// components of the same deploy (for consumer-key uniqueness and ECA references).
    pub(crate) fn check_component(
        &self,
        kind: MetaType,
        member: &str,
        element: &Element,
        pending: &[(MetaType, String, Element)],
        check: Check,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let existing = self.component(kind, member);
        let blocked = self.settings.block_connected_app_creation && check != Check::Seed;
        if kind == CONNECTED_APP && existing.is_none() && blocked {
            problems.push(self.settings.block_connected_app_creation_message.clone());
        }
        // Salesforce validates deployed files against the WSDL sequence; seeds are lenient.
        if check != Check::Seed
            && let Some((field, parent)) = element.first_out_of_wsdl_order()
        {
            problems.push(format!(
                "Error parsing file: Element {{{METADATA_NS}}}{field} invalid at this location in type {parent}"
            ));
        }
        if kind.is_eca_satellite() {
            match element.child_text("externalClientApplication") {
                None => {
                    problems.push("Required field is missing: externalClientApplication".into())
                }
                Some(eca) => {
                    let deployed_too = pending.iter().any(|(k, m, _)| *k == ECA && m == eca);
                    if self.component(ECA, eca).is_none() && !deployed_too {
                        problems.push(format!("no ExternalClientApplication named {eca} found"));
                    }
                    // Each ECA has at most one component of each satellite type.
                    if let Some((other, _)) =
                        self.satellite(kind, eca).filter(|(m, _)| *m != member)
                    {
                        problems.push(format!("{eca} already has a {} named {other}", kind.name));
                    }
                }
            }
        }
        if let Some(cert) = certificate(element, kind) {
            if let Err(e) = Cert::parse(cert) {
                problems.push(format!("The certificate is not valid: {e}"));
            }
            if kind == ECA_GLOBAL && cert.len() > crate::certs::ECA_MAX_CERT_CHARS {
                problems.push("The certificate must be smaller than 4 KB.".into());
            }
        }
        let rotating_key =
            kind == ECA_GLOBAL && element.child_bool("shouldRotateConsumerKey") == Some(true);
        let rotating = rotating_key
            || (kind == ECA_GLOBAL
                && element.child_bool("shouldRotateConsumerSecret") == Some(true));
        if rotating && check != Check::DeployIgnoringWarnings {
            problems
                .push("Rotating the consumer key or secret requires ignoreWarnings=true".into());
        }
        if let Some(key) = consumer_key(element, kind) {
            let old_key = existing.and_then(|c| consumer_key(&c.element, kind));
            if old_key.is_some_and(|old| old != key) && !rotating_key {
                problems.push("The consumer key can't be changed on an existing app.".into());
            }
            if !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                || key.len() < 8
                || key.len() > 256
            {
                problems.push("The consumer key must be 8 to 256 alphanumeric characters.".into());
            }
            let taken_here = self.components.iter().any(|((t, m), c)| {
                MetaType::by_name(t).is_some_and(|k| {
                    (k, m.as_str()) != (kind, member) && consumer_key(&c.element, k) == Some(key)
                })
            });
            let taken_in_deploy = pending.iter().any(|(k, m, e)| {
                (*k, m.as_str()) != (kind, member) && consumer_key(e, *k) == Some(key)
            });
            if taken_here || taken_in_deploy {
                problems.push("The consumer key is already taken".into());
            }
        }
        problems
    }

    /// Stores a component (full replace), keeping immutable credentials and recording a
    /// certificate change for the propagation window.
    pub(crate) fn put_component(
        &mut self,
        kind: MetaType,
        member: &str,
        mut element: Element,
        by: &str,
    ) {
        element.remove_deep("fullName");
        let now = self.now();
        let key = (kind.name.to_string(), member.to_string());
        let previous = self.components.get(&key).cloned();
        if matches!(kind, CONNECTED_APP | ECA_GLOBAL) {
            self.settle_credentials(kind, previous.as_ref().map(|c| &c.element), &mut element);
        }
        let app = match kind {
            CONNECTED_APP => Some(app_key(CONNECTED_APP, member)),
            ECA_GLOBAL => element
                .child_text("externalClientApplication")
                .map(|e| app_key(ECA, e)),
            _ => None,
        };
        if let (Some(app), Some(prev)) = (app, &previous) {
            let old = certificate(&prev.element, kind).and_then(|t| Cert::parse(t).ok());
            let new = certificate(&element, kind).and_then(|t| Cert::parse(t).ok());
            if old != new {
                let history = self
                    .cert_history
                    .entry(app.clone())
                    .or_insert_with(|| old.iter().cloned().collect());
                history.extend(new);
                let at_ms = self.now_ms();
                self.cert_changes.insert(app, CertChange { old, at_ms });
            }
        }
        let (id, created, created_by) = match previous {
            Some(p) => (p.id, p.created, p.created_by),
            None => (self.new_id(kind.id_prefix), now, by.to_string()),
        };
        self.components.insert(
            key,
            Component {
                element,
                id,
                created,
                modified: now,
                created_by,
                modified_by: by.to_string(),
            },
        );
    }

    /// Consumer key and secret are settable only at creation: omitted values are carried over
    /// from the stored component (Salesforce keeps them; reads never show the secret), new
    /// apps get generated ones, and `shouldRotateConsumer*` replaces them.
    fn settle_credentials(
        &mut self,
        kind: MetaType,
        previous: Option<&Element>,
        element: &mut Element,
    ) {
        let holder = match kind {
            CONNECTED_APP => {
                if element.child("oauthConfig").is_none() {
                    return;
                }
                element.child_mut("oauthConfig").expect("checked above")
            }
            _ => element,
        };
        let old_holder = previous.and_then(|p| {
            if kind == CONNECTED_APP {
                p.child("oauthConfig")
            } else {
                Some(p)
            }
        });
        let rotate_key = holder.child_bool("shouldRotateConsumerKey") == Some(true);
        let rotate_secret = holder.child_bool("shouldRotateConsumerSecret") == Some(true);
        for (field, rotate, fresh) in [
            ("consumerKey", rotate_key, consumers::fresh_consumer_key()),
            (
                "consumerSecret",
                rotate_secret,
                consumers::fresh_consumer_secret(),
            ),
        ] {
            let carried = old_holder
                .and_then(|o| o.child_text(field))
                .map(str::to_string);
            let value = match (
                rotate,
                holder.child_text(field).map(str::to_string),
                carried,
            ) {
                (true, _, _) => fresh,
                (false, Some(given), _) => given,
                (false, None, Some(old)) => old,
                (false, None, None) => fresh,
            };
            holder.set_child_text(field, &value);
        }
        for flag in ["shouldRotateConsumerKey", "shouldRotateConsumerSecret"] {
            if let Some(f) = holder.child_mut(flag) {
                f.text = "false".into();
            }
        }
    }

    /// The id of an app's main component (ConnectedApp `0H4…`, ECA `0xI…`), by bookkeeping key.
    pub(crate) fn app_component_id(&self, key: &str) -> Option<&str> {
        let (type_name, name) = key.split_once(':')?;
        Some(
            self.component(MetaType::by_name(type_name)?, name)?
                .id
                .as_str(),
        )
    }

    /// Whether the app wants its consumer secret with a refresh token request
    /// (`isSecretRequiredForRefreshToken`, on unless set false), and that secret.
    pub(crate) fn refresh_secret(&self, app: &AppView) -> (bool, Option<String>) {
        let holder = match app.kind {
            CONNECTED_APP => self
                .component(CONNECTED_APP, &app.name)
                .and_then(|c| c.element.child("oauthConfig")),
            _ => self
                .satellite(ECA_GLOBAL, &app.name)
                .map(|(_, c)| &c.element),
        };
        let required = holder
            .and_then(|h| h.child_bool("isSecretRequiredForRefreshToken"))
            .unwrap_or(true);
        let secret = holder
            .and_then(|h| h.child_text("consumerSecret"))
            .map(str::to_string);
        (required, secret)
    }

    /// The label of an app (`AppName` of its OauthToken rows), by its bookkeeping key.
    pub(crate) fn app_label(&self, key: &str) -> Option<String> {
        let (type_name, name) = key.split_once(':')?;
        let kind = MetaType::by_name(type_name)?;
        let c = self.component(kind, name)?;
        Some(c.element.child_text("label").unwrap_or(name).to_string())
    }
}

/// Parses a component file and checks its root element names the type.
pub(crate) fn parse_root(xml: &str, kind: MetaType) -> Result<Element, String> {
    let element = Element::parse(xml)?;
    if element.name != kind.name {
        return Err(format!(
            "expected a {} root element, found {}",
            kind.name, element.name
        ));
    }
    Ok(element)
}

/// The certificate text stored on a component, if this type carries one.
pub(crate) fn certificate(element: &Element, kind: MetaType) -> Option<&str> {
    match kind {
        CONNECTED_APP => element.child("oauthConfig")?.child_text("certificate"),
        ECA_GLOBAL => element.child_text("certificate"),
        _ => None,
    }
}

/// Replaces the certificate on a component of a type that carries one.
pub(crate) fn set_certificate(element: &mut Element, kind: MetaType, cert: &str) {
    let holder = if kind == CONNECTED_APP {
        if element.child("oauthConfig").is_none() {
            element.children.push(Element::new("oauthConfig"));
        }
        element.child_mut("oauthConfig").expect("just ensured")
    } else {
        element
    };
    match holder.child_mut("certificate") {
        Some(existing) => existing.text = cert.trim().to_string(),
        None => holder.insert_in_wsdl_order(Element::with_text("certificate", cert.trim())),
    }
}

fn consumer_key(element: &Element, kind: MetaType) -> Option<&str> {
    match kind {
        CONNECTED_APP => element.child("oauthConfig")?.child_text("consumerKey"),
        ECA_GLOBAL => element.child_text("consumerKey"),
        _ => None,
    }
}

/// Maps metadata scope names (`Api`, `RefreshToken`, …) to OAuth scope tokens, `api` when none
/// is set.
fn token_scope(scopes: &[String]) -> String {
    let out = scope_tokens(scopes);
    if out.is_empty() {
        "api".into()
    } else {
        out.join(" ")
    }
}

/// The OAuth scope tokens of metadata scope names, each once, in order.
pub(crate) fn scope_tokens(scopes: &[String]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for s in scopes {
        let token = match s.as_str() {
            "Api" => "api",
            "Web" => "web",
            "Full" => "full",
            "Basic" => "id",
            "RefreshToken" | "OfflineAccess" => "refresh_token",
            "OpenID" => "openid",
            "CustomPermissions" => "custom_permissions",
            "Chatter" => "chatter_api",
            _ => continue,
        };
        if !out.contains(&token) {
            out.push(token);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_map_to_tokens() {
        let s: Vec<String> = ["Api", "RefreshToken", "OfflineAccess", "Basic"]
            .map(String::from)
            .into();
        assert_eq!(token_scope(&s), "api refresh_token id");
        assert_eq!(token_scope(&[]), "api");
    }
}
