//! The simulations' cryptography (IO-11): rustls's `ring` provider, with its randomness and its
//! key exchange drawn from the run's seed, so that a TLS connection's bytes (which the trace
//! hashes, SIM-6) are the same on every run of a seed (SIM-1).
//!
//! ring's own key exchange draws its ephemeral secrets from the operating system (its
//! `SecureRandom` trait is sealed, so no seeded source can be handed to it); the one group
//! offered here is X25519 computed by `x25519-dalek` from secrets this module draws. Every other
//! algorithm (the AEADs, HKDF, signature verification) is ring's and needs no randomness;
//! signing does for ECDSA and RSA-PSS, which is why the simulations' certificates have Ed25519
//! keys (`tests/kit/certs.rs`). Not secure, and never used outside `sim/`.
//!
//! Owns: the seeded `CryptoProvider` of a run. Must not touch: certificates or the product's TLS
//! configuration (`backup::tls` builds those over whatever provider `Env::crypto` holds).

use std::fmt;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use rustls::{Error, NamedGroup};

/// Mixed into the run's seed, so the crypto's stream differs from the scenario's own.
const CRYPTO_RNG_SALT: u64 = 0x7e15_c0ff_ee00_0011;

/// Random bytes from the run's seed.
struct Seeded(Mutex<StdRng>);

impl fmt::Debug for Seeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seeded")
    }
}

impl SecureRandom for Seeded {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        self.0.lock().unwrap().fill_bytes(buf);
        Ok(())
    }
}

/// X25519 with secrets from [`Seeded`].
#[derive(Debug)]
struct SeededX25519(&'static Seeded);

struct Exchange {
    secret: x25519_dalek::StaticSecret,
    public: [u8; 32],
}

impl SupportedKxGroup for SeededX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut bytes = [0u8; 32];
        self.0
            .fill(&mut bytes)
            .map_err(|_| Error::FailedToGetRandomBytes)?;
        let secret = x25519_dalek::StaticSecret::from(bytes);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Ok(Box::new(Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

impl ActiveKeyExchange for Exchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; 32] = peer_pub_key
            .try_into()
            .map_err(|_| Error::from(rustls::PeerMisbehaved::InvalidKeyShare))?;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// The provider of one simulation run: every host's TLS draws from the one generator, in the
/// order the simulation's single thread runs them. Leaks two small values per run (rustls
/// wants `'static` references).
pub fn seeded_provider(seed: u64) -> Arc<CryptoProvider> {
    let random: &'static Seeded = Box::leak(Box::new(Seeded(Mutex::new(StdRng::seed_from_u64(
        seed ^ CRYPTO_RNG_SALT,
    )))));
    let x25519: &'static SeededX25519 = Box::leak(Box::new(SeededX25519(random)));
    Arc::new(CryptoProvider {
        kx_groups: vec![x25519],
        secure_random: random,
        ..rustls::crypto::ring::default_provider()
    })
}
