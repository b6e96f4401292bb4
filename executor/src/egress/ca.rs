//! The certificate authority the proxy intercepts TLS with, for runs that
//! use secrets only (it must see a request to put a secret in it). It is
//! made fresh at every start and its key never leaves this process; only
//! its certificate goes into those runs, read-only. Leaf certificates are
//! issued per host on first use and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::allow_list::Target;

/// The CA outlives any run by far; leaves are short-lived.
const CA_VALIDITY: Duration = Duration::days(30);
const LEAF_VALIDITY: Duration = Duration::days(2);
/// Clocks in containers and on hosts disagree a little.
const BACKDATE: Duration = Duration::hours(1);
/// Leaves kept before the cache starts over.
const MAX_CACHED_LEAVES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot set up TLS with it: {0}")]
    Tls(#[from] rustls::Error),
}

pub struct InterceptCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl InterceptCa {
    pub fn generate() -> Result<Self, CaError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "dynamic-mcp egress interception CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        Ok(Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
            leaves: Mutex::default(),
        })
    }

    /// What runs with secrets trust.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The TLS server side for connections to `target`.
    pub fn server_config(&self, target: &Target) -> Result<Arc<ServerConfig>, CaError> {
        let host = target.to_string();
        if let Some(config) = self.cache().get(&host) {
            return Ok(Arc::clone(config));
        }
        let config = Arc::new(self.issue(target)?);
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED_LEAVES {
            cache.clear();
        }
        cache.insert(host, Arc::clone(&config));
        Ok(config)
    }

    fn issue(&self, target: &Target) -> Result<ServerConfig, CaError> {
        let san = match target {
            Target::Name(name) => name.clone(),
            Target::Ip(ip) => ip.to_string(),
        };
        let mut params = CertificateParams::new(vec![san.clone()])?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, san);
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        let key = KeyPair::generate()?;
        let leaf = params.signed_by(&key, &self.issuer)?;
        let chain = vec![leaf.der().clone(), CertificateDer::clone(self.issuer.der())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ServerConfig>>> {
        self.leaves.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_are_issued_once_per_host() {
        let ca = InterceptCa::generate().unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let api = Target::Name("api.example.com".into());
        let first = ca.server_config(&api).unwrap();
        let again = ca.server_config(&api).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let ip = Target::Ip("203.0.113.7".parse().unwrap());
        assert!(!Arc::ptr_eq(&first, &ca.server_config(&ip).unwrap()));
        assert_eq!(first.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
