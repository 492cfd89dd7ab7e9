//! Certificates for TLS on the backup port (spec/security.md), made with rcgen: a CA, and
//! server and client certificates it signs, with the names and validity a test asks for.
//!
//! Owns: making keys and certificates as PEM text. Must not touch: files or the clock (the
//! caller says when a certificate is valid and writes the PEM where it wants it).
//!
//! A key is Ed25519 from a 32-byte seed (so a simulation makes the same certificates, byte for
//! byte, from its seed: Ed25519 signatures draw no randomness, and rcgen derives the serial
//! number from the public key) or, without a seed, ECDSA P-256 from the system's randomness (the
//! kind `openssl` and most CAs make).

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A private key and its certificate, as PEM text.
#[derive(Clone, Debug)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// When a certificate is valid: from `not_before` to `not_after`.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From a day before `now` to `days` days after it.
    pub fn days_around(now: SystemTime, days: u64) -> Validity {
        Validity {
            not_before: now - Duration::from_secs(86_400),
            not_after: now + Duration::from_secs(days * 86_400),
        }
    }
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// The PKCS#8 (v1) document of the Ed25519 key with secret `seed`.
fn ed25519_pkcs8(seed: [u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    der
}

fn key(seed: Option<[u8; 32]>) -> KeyPair {
    match seed {
        Some(seed) => KeyPair::try_from(ed25519_pkcs8(seed).as_slice()).expect("an Ed25519 key"),
        None => KeyPair::generate().expect("an ECDSA P-256 key"),
    }
}

/// A certificate authority that signs server and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate (PEM): what `online_backup_tls_client_ca` and `--tls-ca` name.
    pub cert: String,
}

impl Ca {
    /// A self-signed CA named `name`, valid for `validity`; its key from `seed` (Ed25519) or
    /// from the system (ECDSA P-256).
    pub fn new(name: &str, validity: Validity, seed: Option<[u8; 32]>) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).expect("no names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        let key = key(seed);
        let cert = params.self_signed(&key).expect("a CA certificate").pem();
        Ca {
            issuer: Issuer::new(params, key),
            cert,
        }
    }

    /// A certificate for `role` with common name `names[0]` and every name as a subject
    /// alternative name (an IP address as an IP address, anything else as a DNS name), signed by
    /// this CA.
    pub fn issue(
        &self,
        role: Role,
        names: &[&str],
        validity: Validity,
        seed: Option<[u8; 32]>,
    ) -> Pem {
        let mut params = CertificateParams::new(Vec::new()).expect("no names");
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("a DNS name")),
            })
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before.into();
        params.not_after = validity.not_after.into();
        let key = key(seed);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}
