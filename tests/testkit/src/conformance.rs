//! placeholder: the SecretStore conformance suite (being written).
