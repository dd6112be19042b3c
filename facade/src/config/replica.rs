//! The replica's name: what the audit log, `/metrics` and the admin API
//! call this facade when several run on one store.

use toml::Spanned;

/// Longest accepted replica id (a Kubernetes pod name is at most 63).
const MAX_LEN: usize = 128;

/// `replica_id` from the file, checked; else the host name, which in a
/// Kubernetes Deployment is the pod's name and so differs per replica.
pub(super) fn check(value: Option<&Spanned<String>>) -> Result<String, (usize, String)> {
    let Some(value) = value else {
        return Ok(default_id());
    };
    let id = value.get_ref();
    if id.is_empty()
        || id.len() > MAX_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err((
            value.span().start,
            format!(
                "replica_id `{id}` must be 1 to {MAX_LEN} letters, digits, `-`, `_`, `.` or `:` (it becomes a metric label); leave it out to use the host name"
            ),
        ));
    }
    Ok(id.clone())
}

/// The host name, made label-safe; `facade` if the system has none.
fn default_id() -> String {
    let host = gethostname::gethostname();
    let id: String = host
        .to_string_lossy()
        .chars()
        .take(MAX_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "facade".to_owned()
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_name_is_the_default_and_a_bad_id_names_its_offset() {
        let default = check(None).unwrap();
        assert!(!default.is_empty());
        let good = Spanned::new(0..5, "pod-1".to_owned());
        assert_eq!(check(Some(&good)).unwrap(), "pod-1");
        for bad in ["", "has space", "quote\"", &"x".repeat(200)] {
            let spanned = Spanned::new(7..9, bad.to_owned());
            let (offset, message) = check(Some(&spanned)).unwrap_err();
            assert_eq!(offset, 7);
            assert!(message.contains("replica_id"), "{message}");
        }
    }
}
