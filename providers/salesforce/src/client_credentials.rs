//! The OAuth client credentials grant: a consumer key and secret exchanged for an access token
//! of the app's run-as user (`clientCredentialsFlowUser`), with no user login. It is how a
//! consumer secret is probed ([`rekey_api::ConsumerSecretTarget::probe`]) and how `rekey token`
//! mints with one ([`crate::ClientCredentialsMinter`]).
//!
//! The secret goes only into the form body; no message names anything but the consumer key.

use crate::mint::Refusal;
use crate::token::{TokenAnswer, TokenEndpoint};
use rekey_api::{ConsumerSecret, Result};

const CLIENT_CREDENTIALS_GRANT: &str = "client_credentials";

impl TokenEndpoint {
    /// One client credentials grant with `secret`: `POST {login_url}/services/oauth2/token` with
    /// `grant_type=client_credentials&client_id=…&client_secret=…`. Salesforce's success answer
    /// has `access_token`, `signature`, `scope`, `instance_url`, `id`, `token_type`,
    /// `issued_at` and no `expires_in`; only the token and the instance are kept.
    pub(crate) async fn client_credentials(&self, secret: &ConsumerSecret) -> Result<TokenAnswer> {
        let what = format!(
            "client credentials token request with consumer key {} in org {}",
            secret.key(),
            self.org()
        );
        let form = [
            ("grant_type", CLIENT_CREDENTIALS_GRANT),
            ("client_id", secret.key()),
            ("client_secret", secret.expose_secret()),
        ];
        self.grant(&what, &form).await
    }
}

impl Refusal {
    /// Whether a client credentials refusal can clear by waiting. Salesforce applies a rotation
    /// at once (the old pair keeps working as `Rotated`, the new one works immediately), so a
    /// refused pair is wrong for good: an unknown key (`invalid_client_id`), a wrong secret
    /// (`invalid_client`), no run-as user (`no client credentials user enabled`), the flow off
    /// on the app (`client credentials flow is not enabled…`), the grant not allowed
    /// (`unsupported_grant_type`). Any other refusal is not about the pair and may pass (a user
    /// or org state that may change, a policy still propagating).
    pub fn may_clear_for_consumer_secret(&self) -> bool {
        let description = self.description.to_ascii_lowercase();
        !(self.error.starts_with("invalid_client")
            || self.error == "unsupported_grant_type"
            || description.contains("client credentials"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_pair_is_wrong_for_good() {
        let refusal = |error: &str, description: &str| Refusal {
            error: error.into(),
            description: description.into(),
        };
        for (error, description) in [
            ("invalid_client_id", "client identifier invalid"),
            ("invalid_client", "invalid client credentials"),
            ("invalid_grant", "no client credentials user enabled"),
            (
                "invalid_grant",
                "client credentials flow is not enabled for this app",
            ),
            ("unsupported_grant_type", "grant type not supported"),
        ] {
            assert!(
                !refusal(error, description).may_clear_for_consumer_secret(),
                "{error}"
            );
        }
        assert!(refusal("invalid_grant", "user is inactive").may_clear_for_consumer_secret());
    }
}
