//! A row's fingerprint: 64 bits of FNV-1a over its raw values as read
//! (before any normalization), written as 16 hex digits. The report keeps
//! one per divergent row and side, so that a repair can tell whether the
//! follower's row is still the one the comparison saw, whatever column
//! changed, without the report carrying whole rows.
//!
//! The encoding is fixed (a tag per value kind, lengths before bytes), so
//! that a fingerprint means the same across builds and in a stored report.
//! It is no defence against someone forging rows; it tells a change apart
//! from none.

use toolkit_db::sql_value::SqlValue;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0100_0000_01b3;

/// The fingerprint of `row`.
pub fn fingerprint(row: &[SqlValue]) -> String {
    let mut hash = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for value in row {
        match value {
            SqlValue::Null => eat(&[0]),
            SqlValue::Int(v) => {
                eat(&[1]);
                eat(&v.to_le_bytes());
            }
            SqlValue::Float(v) => {
                eat(&[2]);
                eat(&v.to_bits().to_le_bytes());
            }
            SqlValue::Text(v) => {
                eat(&[3]);
                eat(&(v.len() as u64).to_le_bytes());
                eat(v.as_bytes());
            }
            SqlValue::Bytes(v) => {
                eat(&[4]);
                eat(&(v.len() as u64).to_le_bytes());
                eat(v);
            }
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_fixed_and_tell_values_apart() {
        // Fixed: a stored report's fingerprint must still match.
        assert_eq!(fingerprint(&[]), "cbf29ce484222325");
        assert_eq!(
            fingerprint(&[SqlValue::Int(1), SqlValue::Text("a".to_owned())]),
            fingerprint(&[SqlValue::Int(1), SqlValue::Text("a".to_owned())])
        );
        let rows = [
            vec![SqlValue::Int(1), SqlValue::Null],
            vec![SqlValue::Int(1), SqlValue::Text(String::new())],
            vec![SqlValue::Int(1), SqlValue::Text("1".to_owned())],
            vec![SqlValue::Text("ab".to_owned()), SqlValue::Text("c".to_owned())],
            vec![SqlValue::Text("a".to_owned()), SqlValue::Text("bc".to_owned())],
            vec![SqlValue::Float(1.0), SqlValue::Null],
            vec![SqlValue::Bytes(b"ab".to_vec()), SqlValue::Text("c".to_owned())],
        ];
        for (i, a) in rows.iter().enumerate() {
            for b in &rows[i + 1..] {
                assert_ne!(fingerprint(a), fingerprint(b), "{a:?} {b:?}");
            }
        }
    }
}
