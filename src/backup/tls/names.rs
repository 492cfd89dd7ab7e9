//! The names a certificate carries, as the allow-list compares them (SEC-4): the subject's
//! common names and the DNS names of its subject alternative names. rustls-webpki gives the DNS
//! names and the subject's DER; the common names are read from that DER here, with a walker that
//! returns nothing rather than fail on anything it does not expect.
//!
//! Owns: reading names out of a certificate, the allow-list's comparison. Must not touch:
//! verification (rustls-webpki's), the network, files.

use std::fmt;

use rustls::pki_types::CertificateDer;

/// One name of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Name {
    /// A common name (OID 2.5.4.3) of the subject.
    Common(String),
    /// A DNS name of the subject alternative name extension.
    Dns(String),
}

impl Name {
    pub fn value(&self) -> &str {
        match self {
            Name::Common(v) | Name::Dns(v) => v,
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Name::Common(v) => write!(f, "CN {v}"),
            Name::Dns(v) => write!(f, "DNS {v}"),
        }
    }
}

/// The names as a person reads them: `CN backup, DNS backup.example.com`, or `no name`.
pub fn shown(names: &[Name]) -> String {
    if names.is_empty() {
        return "no name".to_string();
    }
    names
        .iter()
        .map(Name::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The common names of the subject, then the DNS names; empty for a certificate that does not
/// parse (verification refuses it anyway).
pub fn certificate_names(der: &CertificateDer<'_>) -> Vec<Name> {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
        return Vec::new();
    };
    let mut names: Vec<Name> = common_names(cert.subject())
        .into_iter()
        .map(Name::Common)
        .collect();
    names.extend(cert.valid_dns_names().map(|d| Name::Dns(d.to_string())));
    names
}

/// Whether one of `names` is on `allowed`, comparing ASCII case-insensitively (SEC-4).
pub fn allowed(names: &[Name], allowed: &[String]) -> bool {
    names
        .iter()
        .any(|n| allowed.iter().any(|a| a.eq_ignore_ascii_case(n.value())))
}

/// The DER object at the start of `input`: its tag, its content and what follows it.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, after) = rest.split_at_checked(n)?;
        rest = after;
        bytes.iter().fold(0usize, |a, &b| (a << 8) | b as usize)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

const SET: u8 = 0x31;
const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
/// 2.5.4.3, id-at-commonName.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The common names in a Name's content (the RDN sequence, without its outer SEQUENCE header):
/// UTF8String, PrintableString, IA5String and TeletexString read as UTF-8 (lossily),
/// BMPString as UTF-16.
fn common_names(mut rdns: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while let Some((SET, mut attributes, rest)) = der_next(rdns) {
        rdns = rest;
        while let Some((SEQUENCE, attribute, rest)) = der_next(attributes) {
            attributes = rest;
            let Some((OID, oid, value)) = der_next(attribute) else {
                continue;
            };
            if oid != COMMON_NAME {
                continue;
            }
            match der_next(value) {
                Some((0x0c | 0x13 | 0x16 | 0x14, text, _)) => {
                    out.push(String::from_utf8_lossy(text).into_owned())
                }
                Some((0x1e, text, _)) => {
                    let units: Vec<u16> = text
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    out.push(String::from_utf16_lossy(&units));
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SET { SEQUENCE { OID, <tag> <value> } }`.
    fn rdn(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut atv = vec![OID, oid.len() as u8];
        atv.extend_from_slice(oid);
        atv.extend_from_slice(&[tag, value.len() as u8]);
        atv.extend_from_slice(value);
        let mut seq = vec![SEQUENCE, atv.len() as u8];
        seq.extend(atv);
        let mut set = vec![SET, seq.len() as u8];
        set.extend(seq);
        set
    }

    #[test]
    fn common_names_are_read_in_every_string_type() {
        let org = [0x55, 0x04, 0x0a];
        let mut subject = rdn(&org, 0x0c, b"Example");
        subject.extend(rdn(COMMON_NAME, 0x0c, "bäckup".as_bytes()));
        subject.extend(rdn(COMMON_NAME, 0x13, b"ops"));
        subject.extend(rdn(COMMON_NAME, 0x1e, &[0, b'b', 0, b'm']));
        assert_eq!(common_names(&subject), vec!["bäckup", "ops", "bm"]);
        // Damaged or foreign bytes give what was read before them, never a panic.
        assert_eq!(common_names(&[0x31, 0x7f, 0x30]), Vec::<String>::new());
        assert_eq!(
            common_names(&[0x31, 0x84, 0xff, 0xff]),
            Vec::<String>::new()
        );
        assert_eq!(common_names(&[]), Vec::<String>::new());
        for cut in 0..subject.len() {
            common_names(&subject[..cut]);
        }
    }

    #[test]
    fn sec_4_der_lengths_are_read_in_short_and_long_form_and_bounded() {
        let with = |head: &[u8], len: usize, after: &[u8]| {
            let mut v = head.to_vec();
            v.extend((0..len).map(|i| i as u8));
            v.extend_from_slice(after);
            v
        };
        let content = |len: usize| (0..len).map(|i| i as u8).collect::<Vec<_>>();
        // The input, and the content's and the rest's lengths read from it.
        type Case = (Vec<u8>, Option<(usize, usize)>);
        let cases: [Case; 10] = [
            (vec![], None),
            (vec![0x04], None),
            (with(&[0x04, 0x7f], 127, &[9]), Some((127, 1))),
            (with(&[0x04, 3], 2, &[]), None),
            // 0x80, the indefinite form, is not DER.
            (with(&[0x04, 0x80], 128, &[]), None),
            (with(&[0x04, 0x81, 200], 200, &[9, 9]), Some((200, 2))),
            (with(&[0x04, 0x82, 0x01, 0x02], 258, &[]), Some((258, 0))),
            (with(&[0x04, 0x84, 0, 0, 0, 3], 3, &[]), Some((3, 0))),
            // More than 4 length bytes, or fewer than announced: refused.
            (with(&[0x04, 0x85, 0, 0, 0, 0, 3], 3, &[]), None),
            (with(&[0x04, 0x82, 0x01], 0, &[]), None),
        ];
        for (input, want) in cases {
            let got = der_next(&input).map(|(tag, c, rest)| {
                assert_eq!(tag, 0x04, "SEC-4");
                assert_eq!(c, &content(c.len())[..], "SEC-4: {input:02x?}");
                (c.len(), rest.len())
            });
            assert_eq!(got, want, "SEC-4: {:02x?}", &input[..input.len().min(8)]);
        }
    }

    #[test]
    fn sec_4_a_long_common_name_is_read_whole() {
        let long = "a".repeat(300);
        let tlv = |tag: u8, content: &[u8]| {
            let mut v = vec![tag];
            match content.len() {
                n if n < 0x80 => v.push(n as u8),
                n if n < 0x100 => v.extend([0x81, n as u8]),
                n => v.extend([0x82, (n >> 8) as u8, n as u8]),
            }
            v.extend_from_slice(content);
            v
        };
        let mut atv = tlv(OID, COMMON_NAME);
        atv.extend(tlv(0x0c, long.as_bytes()));
        let subject = tlv(SET, &tlv(SEQUENCE, &atv));
        assert_eq!(common_names(&subject), vec![long], "SEC-4");
        assert_eq!(shown(&[]), "no name", "SEC-6");
    }

    #[test]
    fn allowed_ignores_ascii_case_and_compares_whole_names() {
        let names = [
            Name::Common("Backup Operator".into()),
            Name::Dns("backup.example.com".into()),
        ];
        assert!(allowed(&names, &["BACKUP.example.com".into()]));
        assert!(allowed(&names, &["backup operator".into()]));
        assert!(!allowed(&names, &["example.com".into(), "backup".into()]));
        assert!(!allowed(&[], &["backup".into()]));
        assert_eq!(shown(&names), "CN Backup Operator, DNS backup.example.com");
    }
}
