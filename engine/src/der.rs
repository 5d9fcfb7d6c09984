//! Just enough DER (X.690) to hand public keys and ECDSA signatures to X.509 crypto libraries
//! (BoringSSL behind Envoy's `verify_signature`, OpenSSL, WebCrypto's `spki` import): keys as
//! `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7; RSA RFC 8017 A.1.1, EC RFC 5480, Ed25519 RFC
//! 8410), ECDSA signatures as `SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 §2.2.3). Encoding
//! only: nothing here parses DER.

/// rsaEncryption (1.2.840.113549.1.1.1) with NULL parameters.
const RSA_ENCRYPTION: [u8; 13] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// id-ecPublicKey (1.2.840.10045.2.1) with prime256v1 (1.2.840.10045.3.1.7).
const EC_P256: [u8; 19] = [
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
    0x03, 0x01, 0x07,
];
/// id-ecPublicKey (1.2.840.10045.2.1) with secp384r1 (1.3.132.0.34).
const EC_P384: [u8; 16] = [
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22,
];
/// id-Ed25519 (1.3.101.112), no parameters.
const ED25519: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// A DER element.
fn element(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let digits = without_leading_zeros(&bytes);
        out.push(0x80 | digits.len() as u8);
        out.extend_from_slice(digits);
    }
    out.extend_from_slice(content);
    out
}

fn without_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// A non-negative INTEGER from big-endian bytes.
fn integer(bytes: &[u8]) -> Vec<u8> {
    let digits = without_leading_zeros(bytes);
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    element(0x02, &content)
}

/// `SEQUENCE` of two non-negative INTEGERs.
fn integer_pair(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut content = integer(a);
    content.extend(integer(b));
    element(0x30, &content)
}

/// `SubjectPublicKeyInfo` of an algorithm identifier's content and a key.
fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(key);
    let mut content = element(0x30, algorithm);
    content.extend(element(0x03, &bits));
    element(0x30, &content)
}

/// An RSA public key (modulus and exponent, big-endian).
pub(crate) fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    spki(&RSA_ENCRYPTION, &integer_pair(n, e))
}

/// An EC public key of P-256 (`p384: false`) or P-384, uncompressed; coordinates shorter than
/// the curve's size are left-padded, longer ones are `None`.
pub(crate) fn ec_spki(p384: bool, x: &[u8], y: &[u8]) -> Option<Vec<u8>> {
    let (algorithm, size): (&[u8], usize) = if p384 { (&EC_P384, 48) } else { (&EC_P256, 32) };
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    for coordinate in [x, y] {
        let padding = size.checked_sub(coordinate.len())?;
        point.resize(point.len() + padding, 0);
        point.extend_from_slice(coordinate);
    }
    Some(spki(algorithm, &point))
}

/// An Ed25519 public key.
pub(crate) fn ed25519_spki(x: &[u8]) -> Vec<u8> {
    spki(&ED25519, x)
}

/// An ECDSA signature of `size`-byte `r || s` (JOSE, RFC 7518 §3.4) as DER; `None` for
/// another length.
pub(crate) fn ecdsa_signature(signature: &[u8], size: usize) -> Option<Vec<u8>> {
    if signature.len() != 2 * size {
        return None;
    }
    let (r, s) = signature.split_at(size);
    Some(integer_pair(r, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_non_negative_and_lengths_long_when_needed() {
        assert_eq!(integer(&[0, 0, 0x12]), [0x02, 0x01, 0x12]);
        assert_eq!(integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(integer(&[0, 0]), [0x02, 0x01, 0x00]);
        let long = element(0x04, &[7; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(&element(0x04, &[7; 200])[..3], &[0x04, 0x81, 200]);
        assert_eq!(&element(0x04, &[7; 127])[..2], &[0x04, 127]);
    }

    #[test]
    fn ec_keys_become_subject_public_key_info() {
        // The P-256 SubjectPublicKeyInfo prefix every encoder produces for a 65-byte point.
        let spki = ec_spki(false, &[1; 32], &[2; 31]).unwrap();
        let prefix = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
        ];
        assert_eq!(&spki[..prefix.len()], &prefix);
        assert_eq!(spki.len(), prefix.len() + 64);
        assert_eq!(
            spki[prefix.len() + 32],
            0,
            "a short coordinate is left-padded"
        );
        assert_eq!(ec_spki(false, &[1; 33], &[2; 32]), None);
        // P-384: the prefix of a 97-byte point.
        let spki = ec_spki(true, &[1; 48], &[2; 48]).unwrap();
        assert_eq!(&spki[..5], &[0x30, 0x76, 0x30, 0x10, 0x06]);
        assert_eq!(spki.len(), 120);
    }

    #[test]
    fn ed25519_and_rsa_keys_have_their_fixed_prefixes() {
        // RFC 8410 §10.1.
        let spki = ed25519_spki(&[9; 32]);
        assert_eq!(
            &spki[..12],
            &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00
            ]
        );
        // A 2048-bit modulus with its top bit set, exponent 65537: the prefix of every such
        // key (`openssl rsa -pubout -outform der`).
        let spki = rsa_spki(&[0xc5; 256], &[1, 0, 1]);
        assert_eq!(
            &spki[..33],
            &[
                0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                0x01, 0x01, 0x01, 0x05, 0x00, 0x03, 0x82, 0x01, 0x0f, 0x00, 0x30, 0x82, 0x01, 0x0a,
                0x02, 0x82, 0x01, 0x01, 0x00
            ]
        );
        assert_eq!(&spki[spki.len() - 5..], &[0x02, 0x03, 1, 0, 1]);
    }

    #[test]
    fn ecdsa_signatures_become_integer_pairs() {
        // r with its top bit set gains a zero byte; s with leading zeros loses them.
        let mut jose = vec![0x80; 32];
        jose.extend([0; 31]);
        jose.push(5);
        let der = ecdsa_signature(&jose, 32).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x05]);
        assert_eq!(der.len(), 40);
        assert_eq!(ecdsa_signature(&[1; 63], 32), None);
    }
}
