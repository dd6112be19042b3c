//! TLS session tickets sealed with keys the operator shares between
//! replicas (`session_ticket_key_files`), so that a client the load
//! balancer sends to another replica resumes its session there instead of
//! making a full handshake: what nginx's `ssl_session_ticket_key` does.
//!
//! Each file holds one key: 80 random bytes (`openssl rand 80`), the
//! format nginx uses, so an operator can keep one key set for both while
//! moving traffic between them. The first 16 bytes name the key and travel
//! in every ticket; the other 64 are the secret, from which HKDF-SHA256
//! derives a ChaCha20-Poly1305 key. The first file's key seals new tickets;
//! every file's key opens them, so a rotation adds the new key in front on
//! every replica first and drops the old one a ticket lifetime later.
//!
//! A ticket is `name ‖ nonce ‖ sealed session ‖ tag`, with a random nonce,
//! as rustls's own ticketer makes them. The authenticated data is the key's
//! name and a digest of the client authorities the listener accepted the
//! session under ([`authority_digest`]): a ticket issued before
//! `client_ca_file` or `client_crl_file` changed does not open after, so a
//! client cannot resume its way past the new authorities' check, on this
//! replica or another with the same files.
//!
//! Why by hand: rustls's ticketers make their own random keys and take
//! none from outside, and no maintained crate does this for rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use sha2::Digest;

use super::client_authorities::ClientAuthorities;

/// The size of a key file, as nginx's `ssl_session_ticket_key` reads it.
pub const KEY_FILE_BYTES: usize = 80;
const NAME_BYTES: usize = 16;
const TAG_BYTES: usize = 16;
/// How long a client may keep a ticket, as rustls's own ticketer says.
const LIFETIME_SECONDS: u32 = 6 * 60 * 60;
/// Larger than any session rustls seals (a client certificate chain
/// included); a longer ticket is refused before any work is done.
const MAX_TICKET_BYTES: usize = 64 * 1024;

/// Why the ticket keys cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TicketKeyError {
    /// A file could not be read.
    #[error("session ticket key {}: cannot read it ({source}); check the path and that the facade's user may read it", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not 80 bytes long.
    #[error("session ticket key {}: holds {length} bytes where a key is 80; make one with `openssl rand 80 > {}`", path.display(), path.display())]
    Length {
        /// The file.
        path: PathBuf,
        /// How long it is.
        length: usize,
    },
    /// Two files hold keys with the same name.
    #[error("session ticket keys {} and {} have the same name (their first 16 bytes); each file needs a key of its own, made with `openssl rand 80`", first.display(), second.display())]
    SameName {
        /// The first file.
        first: PathBuf,
        /// The file repeating its name.
        second: PathBuf,
    },
}

/// One key, ready to seal and open tickets.
struct TicketKey {
    name: [u8; NAME_BYTES],
    key: LessSafeKey,
}

/// The keys read from `session_ticket_key_files`: the first seals, all
/// open.
pub struct TicketKeys {
    files: Vec<PathBuf>,
    keys: Vec<TicketKey>,
}

impl std::fmt::Debug for TicketKeys {
    // The keys are secrets: only the files are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TicketKeys {
    /// Reads and checks every file, in order. `files` is not empty (the
    /// configuration checks it).
    pub fn read(files: &[PathBuf]) -> Result<Self, TicketKeyError> {
        let mut keys = Vec::with_capacity(files.len());
        for (index, path) in files.iter().enumerate() {
            let key = read_key(path)?;
            if let Some(earlier) = keys.iter().position(|k: &TicketKey| k.name == key.name) {
                return Err(TicketKeyError::SameName {
                    first: files[earlier].clone(),
                    second: files[index].clone(),
                });
            }
            keys.push(key);
        }
        Ok(Self {
            files: files.to_vec(),
            keys,
        })
    }

    /// The files the keys were read from, the sealing key's first.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

fn read_key(path: &Path) -> Result<TicketKey, TicketKeyError> {
    let bytes = std::fs::read(path).map_err(|source| TicketKeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let Ok(bytes) = <[u8; KEY_FILE_BYTES]>::try_from(bytes.as_slice()) else {
        return Err(TicketKeyError::Length {
            path: path.to_owned(),
            length: bytes.len(),
        });
    };
    let (name, secret) = bytes.split_at(NAME_BYTES);
    let mut key_name = [0u8; NAME_BYTES];
    key_name.copy_from_slice(name);
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"strangler facade session tickets v1");
    let key = salt
        .extract(secret)
        .expand(&[b"chacha20-poly1305"], &CHACHA20_POLY1305)
        .map(UnboundKey::from)
        // Expanding 32 bytes from SHA-256 cannot fail; a key that could not
        // be made would be refused like a short file.
        .map_err(|_| TicketKeyError::Length {
            path: path.to_owned(),
            length: bytes.len(),
        })?;
    Ok(TicketKey {
        name: key_name,
        key: LessSafeKey::new(key),
    })
}

/// The listener's ticket keys, shared by each configuration it builds and
/// swapped whole on reload.
#[derive(Clone)]
pub struct SharedTicketKeys(Arc<ArcSwap<TicketKeys>>);

impl std::fmt::Debug for SharedTicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.load().fmt(f)
    }
}

impl SharedTicketKeys {
    /// Starts with `keys`.
    pub fn new(keys: TicketKeys) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(keys)))
    }

    /// Seals new tickets, and opens them, with `keys` from now on.
    pub fn install(&self, keys: TicketKeys) {
        self.0.store(Arc::new(keys));
    }

    /// The files the keys in use were read from.
    pub fn files(&self) -> Vec<PathBuf> {
        self.0.load().files().to_vec()
    }

    /// A ticketer for a listener accepting sessions under `authorities`.
    pub(super) fn ticketer(&self, authorities: Option<&ClientAuthorities>) -> Arc<dyn ProducesTickets> {
        Arc::new(FileTicketer {
            keys: self.clone(),
            context: authority_digest(authorities),
            random: SystemRandom::new(),
        })
    }
}

/// What a ticket is bound to besides its key: the SHA-256 of the client
/// authorities and revocation lists, in order (all zero without them).
fn authority_digest(authorities: Option<&ClientAuthorities>) -> [u8; 32] {
    let Some(authorities) = authorities else {
        return [0; 32];
    };
    let mut digest = sha2::Sha256::new();
    // Each part is length-prefixed, so no two different sets hash alike.
    let mut part = |bytes: &[u8]| {
        digest.update((bytes.len() as u64).to_be_bytes());
        digest.update(bytes);
    };
    for root in &authorities.roots.roots {
        part(root.subject.as_ref());
        part(root.subject_public_key_info.as_ref());
        part(root.name_constraints.as_deref().unwrap_or_default());
    }
    for list in &authorities.crls {
        part(list.as_ref());
    }
    digest.finalize().into()
}

/// Seals and opens tickets with the shared keys.
struct FileTicketer {
    keys: SharedTicketKeys,
    context: [u8; 32],
    random: SystemRandom,
}

impl std::fmt::Debug for FileTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTicketer")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl FileTicketer {
    fn aad(&self, name: &[u8; NAME_BYTES]) -> [u8; NAME_BYTES + 32] {
        let mut aad = [0u8; NAME_BYTES + 32];
        aad[..NAME_BYTES].copy_from_slice(name);
        aad[NAME_BYTES..].copy_from_slice(&self.context);
        aad
    }
}

impl ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECONDS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.0.load();
        let key = keys.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(NAME_BYTES + NONCE_LEN + plain.len() + TAG_BYTES);
        ticket.extend_from_slice(&key.name);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(plain);
        let tag = key
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(&key.name)),
                &mut ticket[NAME_BYTES + NONCE_LEN..],
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME_BYTES + NONCE_LEN + TAG_BYTES || ticket.len() > MAX_TICKET_BYTES {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_BYTES);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = self.keys.0.load();
        // A name no key has: a ticket from a key since dropped, or from
        // elsewhere; the client makes a full handshake.
        let key = keys.keys.iter().find(|key| key.name[..] == *name)?;
        let mut opened = sealed.to_vec();
        let length = key
            .key
            .open_in_place(
                Nonce::try_assume_unique_for_key(nonce).ok()?,
                Aad::from(self.aad(&key.name)),
                &mut opened,
            )
            .ok()?
            .len();
        opened.truncate(length);
        Some(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(test_harness::properties::config())]

        /// A ticket is a client's bytes: whatever it sends, opening it
        /// neither panics nor succeeds unless the facade sealed it.
        #[test]
        fn tickets_not_sealed_here_never_open(ticket in proptest::collection::vec(any::<u8>(), 0..300)) {
            let dir = tempfile::tempdir().unwrap();
            let shared = keys(&[key_file(dir.path(), "key", 1)]);
            prop_assert_eq!(shared.ticketer(None).decrypt(&ticket), None);
        }

        /// A sealed ticket with any one byte changed does not open.
        #[test]
        fn a_changed_ticket_does_not_open(
            session in proptest::collection::vec(any::<u8>(), 0..200),
            at in any::<prop::sample::Index>(),
            flip in 1u8..,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let ticketer = keys(&[key_file(dir.path(), "key", 1)]).ticketer(None);
            let mut ticket = ticketer.encrypt(&session).unwrap();
            prop_assert_eq!(ticketer.decrypt(&ticket), Some(session));
            let at = at.index(ticket.len());
            ticket[at] ^= flip;
            prop_assert_eq!(ticketer.decrypt(&ticket), None);
        }
    }

    fn key_file(dir: &Path, stem: &str, byte: u8) -> PathBuf {
        let path = dir.join(format!("{stem}.key"));
        let mut bytes = [byte; KEY_FILE_BYTES];
        // Different secrets under different names.
        bytes[NAME_BYTES] = byte.wrapping_add(1);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn keys(files: &[PathBuf]) -> SharedTicketKeys {
        SharedTicketKeys::new(TicketKeys::read(files).unwrap())
    }

    #[test]
    fn a_ticket_opens_with_the_same_key_on_another_replica_and_not_with_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let current = key_file(dir.path(), "current", 1);
        let other = key_file(dir.path(), "other", 2);
        let sealed = keys(std::slice::from_ref(&current))
            .ticketer(None)
            .encrypt(b"session")
            .unwrap();
        assert_ne!(&sealed[NAME_BYTES + NONCE_LEN..][..7], b"session");

        let replica = keys(std::slice::from_ref(&current)).ticketer(None);
        assert_eq!(replica.decrypt(&sealed).as_deref(), Some(&b"session"[..]));
        assert_eq!(keys(&[other]).ticketer(None).decrypt(&sealed), None);

        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(replica.decrypt(&tampered), None);
        assert_eq!(replica.decrypt(&sealed[..20]), None);
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens_so_a_rotation_loses_no_session() {
        let dir = tempfile::tempdir().unwrap();
        let old = key_file(dir.path(), "old", 1);
        let new = key_file(dir.path(), "new", 2);
        let before = keys(std::slice::from_ref(&old))
            .ticketer(None)
            .encrypt(b"before")
            .unwrap();
        let rotated = keys(&[new.clone(), old]).ticketer(None);
        assert_eq!(rotated.decrypt(&before).as_deref(), Some(&b"before"[..]));
        let after = rotated.encrypt(b"after").unwrap();
        assert_eq!(&after[..NAME_BYTES], &[2; NAME_BYTES]);
        assert_eq!(
            keys(&[new]).ticketer(None).decrypt(&after).as_deref(),
            Some(&b"after"[..])
        );
    }

    #[test]
    fn an_installed_key_set_replaces_the_one_in_use_for_existing_ticketers() {
        let dir = tempfile::tempdir().unwrap();
        let old = key_file(dir.path(), "old", 1);
        let new = key_file(dir.path(), "new", 2);
        let shared = keys(std::slice::from_ref(&old));
        let ticketer = shared.ticketer(None);
        let before = ticketer.encrypt(b"before").unwrap();
        shared.install(TicketKeys::read(std::slice::from_ref(&new)).unwrap());
        assert_eq!(ticketer.decrypt(&before), None);
        assert_eq!(
            &ticketer.encrypt(b"after").unwrap()[..NAME_BYTES],
            &[2; NAME_BYTES]
        );
        assert_eq!(shared.files(), [new]);
    }

    #[test]
    fn a_ticket_does_not_open_under_other_client_authorities() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), "key", 1);
        let shared = keys(&[key]);
        let authority = |name: &str| {
            let issued = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
            let path = dir.path().join(format!("{name}.pem"));
            std::fs::write(&path, issued.cert.pem()).unwrap();
            ClientAuthorities::load(&super::super::client_authorities::ClientAuthorityFiles {
                ca_file: path,
                crl_file: None,
            })
            .unwrap()
        };
        let (first, second) = (authority("first.test"), authority("second.test"));
        let sealed = shared.ticketer(Some(&first)).encrypt(b"session").unwrap();
        assert_eq!(
            shared.ticketer(Some(&first)).decrypt(&sealed).as_deref(),
            Some(&b"session"[..])
        );
        assert_eq!(shared.ticketer(Some(&second)).decrypt(&sealed), None);
        assert_eq!(shared.ticketer(None).decrypt(&sealed), None);
    }

    #[test]
    fn key_files_of_the_wrong_size_or_with_the_same_name_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.key");
        std::fs::write(&short, [7u8; 48]).unwrap();
        let error = TicketKeys::read(std::slice::from_ref(&short))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("short.key") && error.contains("48 bytes") && error.contains("openssl rand 80"),
            "{error}"
        );

        let missing = dir.path().join("missing.key");
        let error = TicketKeys::read(&[missing]).unwrap_err().to_string();
        assert!(
            error.contains("missing.key") && error.contains("cannot read"),
            "{error}"
        );

        let first = key_file(dir.path(), "first", 3);
        let copy = dir.path().join("copy.key");
        std::fs::copy(&first, &copy).unwrap();
        let error = TicketKeys::read(&[first, copy]).unwrap_err().to_string();
        assert!(
            error.contains("first.key") && error.contains("copy.key") && error.contains("same name"),
            "{error}"
        );
    }
}
