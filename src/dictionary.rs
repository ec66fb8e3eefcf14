//! dictionary: attribute names ↔ wire types, from FreeRADIUS-format
//! dictionary files (`ATTRIBUTE`, `VALUE`, `VENDOR`, `BEGIN-VENDOR` /
//! `END-VENDOR`, `$INCLUDE`).
//!
//! The files in `dictionary/` are compiled in and loaded once at start. The
//! configuration uses the dictionary to turn `reply = { Class = "staff" }` into
//! wire attributes (refusing names it does not know) and to find vendor
//! attributes such as `Mailotp-Email` in a request. It knows names and
//! encodings only: nothing here decides or logs.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use thiserror::Error;

use crate::wire::{attr, Packet, MAX_ATTR_VALUE_LEN};

/// The dictionary files, by the name `$INCLUDE` uses.
const FILES: [(&str, &str); 6] = [
    ("dictionary", include_str!("../dictionary/dictionary")),
    ("dictionary.rfc2865", include_str!("../dictionary/dictionary.rfc2865")),
    ("dictionary.rfc2866", include_str!("../dictionary/dictionary.rfc2866")),
    ("dictionary.rfc2868", include_str!("../dictionary/dictionary.rfc2868")),
    ("dictionary.rfc2869", include_str!("../dictionary/dictionary.rfc2869")),
    ("dictionary.mailotp", include_str!("../dictionary/dictionary.mailotp")),
];

/// How a value is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UTF-8 text.
    String,
    /// Raw bytes (`0x…` hex, or text taken as its bytes).
    Octets,
    /// 32-bit unsigned, or a `VALUE` name.
    Integer,
    /// IPv4 address.
    IpAddr,
    /// IPv6 address.
    Ipv6Addr,
    /// Seconds since the epoch, 32 bits.
    Date,
}

/// One attribute the dictionary defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrDef {
    /// Its name as the dictionary spells it.
    pub name: String,
    /// The vendor's Private Enterprise Number for a vendor attribute.
    pub vendor: Option<u32>,
    /// The attribute (or vendor sub-attribute) number.
    pub code: u8,
    /// The value's type.
    pub kind: Kind,
}

/// An attribute ready for a response: type octet and value (a vendor
/// attribute is already wrapped in Vendor-Specific).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireAttribute {
    /// The type octet.
    pub attr_type: u8,
    /// The value.
    pub value: Vec<u8>,
}

/// A dictionary file that cannot be read.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("dictionary {file}, line {line}: {reason}")]
pub struct DictionaryError {
    /// The file.
    pub file: String,
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Attribute definitions by name (case-insensitive, as in FreeRADIUS).
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    attributes: HashMap<String, AttrDef>,
    values: HashMap<(String, String), u32>,
    vendors: HashMap<String, u32>,
}

/// Attributes the server writes itself (or that only make sense in a
/// request): a `reply` carrying one would break the answer.
const SERVER_OWNED: [u8; 7] = [
    attr::USER_PASSWORD,
    attr::REPLY_MESSAGE,
    attr::STATE,
    attr::VENDOR_SPECIFIC,
    attr::PROXY_STATE,
    attr::EAP_MESSAGE,
    attr::MESSAGE_AUTHENTICATOR,
];

impl Dictionary {
    /// The dictionary compiled into the binary, parsed once. A unit test
    /// proves the shipped files parse, so this cannot fail at run time.
    pub fn builtin() -> &'static Dictionary {
        static BUILTIN: OnceLock<Dictionary> = OnceLock::new();
        BUILTIN.get_or_init(|| Dictionary::embedded().expect("the shipped dictionary files parse"))
    }

    /// Parses the dictionary compiled into the binary.
    pub fn embedded() -> Result<Dictionary, DictionaryError> {
        let mut dictionary = Dictionary::default();
        dictionary.load("dictionary", &|name| {
            FILES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| (*text).to_owned())
        })?;
        Ok(dictionary)
    }

    /// Reads `file` and what it includes, from `open`.
    pub fn load(&mut self, file: &str, open: &dyn Fn(&str) -> Option<String>) -> Result<(), DictionaryError> {
        let text = open(file).ok_or_else(|| DictionaryError {
            file: file.to_owned(),
            line: 0,
            reason: "no such dictionary file".to_owned(),
        })?;
        let mut vendor = None;
        for (i, line) in text.lines().enumerate() {
            let err = |reason: String| DictionaryError {
                file: file.to_owned(),
                line: i + 1,
                reason,
            };
            let words: Vec<&str> = line.split('#').next().unwrap_or("").split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                ["$INCLUDE", name] => self.load(name, open)?,
                ["VENDOR", name, number, ..] => {
                    let number = number.parse().map_err(|_| err(format!("vendor number `{number}`")))?;
                    self.vendors.insert(name.to_ascii_lowercase(), number);
                }
                ["BEGIN-VENDOR", name, ..] => {
                    let number = self.vendors.get(&name.to_ascii_lowercase()).copied();
                    vendor = Some(number.ok_or_else(|| err(format!("vendor `{name}` is not defined")))?);
                }
                ["END-VENDOR", ..] => vendor = None,
                ["ATTRIBUTE", name, code, kind, ..] => {
                    let code = code
                        .parse()
                        .map_err(|_| err(format!("attribute number `{code}` is not 1..=255")))?;
                    let kind = parse_kind(kind).ok_or_else(|| err(format!("type `{kind}` is not supported")))?;
                    let def = AttrDef {
                        name: (*name).to_owned(),
                        vendor,
                        code,
                        kind,
                    };
                    self.attributes.insert(name.to_ascii_lowercase(), def);
                }
                ["VALUE", attribute, name, number] => {
                    let number = number.parse().map_err(|_| err(format!("value `{number}`")))?;
                    let key = (attribute.to_ascii_lowercase(), name.to_ascii_lowercase());
                    self.values.insert(key, number);
                }
                _ => return Err(err(format!("cannot read `{}`", line.trim()))),
            }
        }
        Ok(())
    }

    /// A `reply = { Name = value, … }` table (a user's or a policy's),
    /// encoded; an error names the attribute and says why.
    pub fn reply_attributes(
        &self,
        reply: &BTreeMap<String, toml::Value>,
    ) -> Result<Vec<WireAttribute>, (String, String)> {
        reply
            .iter()
            .map(|(name, value)| {
                let owned = self
                    .attribute(name)
                    .is_some_and(|def| def.vendor.is_none() && SERVER_OWNED.contains(&def.code));
                if owned {
                    return Err((name.clone(), format!("{name} is set by mailotp itself, not in a reply")));
                }
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    _ => return Err((name.clone(), "a reply value is a string or a number".to_owned())),
                };
                self.encode(name, &text).map_err(|reason| (name.clone(), reason))
            })
            .collect()
    }

    /// The attribute of that name.
    pub fn attribute(&self, name: &str) -> Option<&AttrDef> {
        self.attributes.get(&name.to_ascii_lowercase())
    }

    /// Encodes `value` for the attribute `name`; the error says why not, in
    /// words for an admin.
    pub fn encode(&self, name: &str, value: &str) -> Result<WireAttribute, String> {
        let def = self
            .attribute(name)
            .ok_or_else(|| format!("`{name}` is not an attribute of the dictionary"))?;
        let bytes = self.value_bytes(def, value)?;
        let max = if def.vendor.is_some() {
            MAX_ATTR_VALUE_LEN - 6
        } else {
            MAX_ATTR_VALUE_LEN
        };
        if bytes.len() > max {
            return Err(format!(
                "the value of {} is {} bytes, more than {max}",
                def.name,
                bytes.len()
            ));
        }
        Ok(match def.vendor {
            None => WireAttribute {
                attr_type: def.code,
                value: bytes,
            },
            Some(vendor) => {
                let mut value = vendor.to_be_bytes().to_vec();
                value.extend_from_slice(&[def.code, bytes.len() as u8 + 2]);
                value.extend_from_slice(&bytes);
                WireAttribute {
                    attr_type: attr::VENDOR_SPECIFIC,
                    value,
                }
            }
        })
    }

    fn value_bytes(&self, def: &AttrDef, value: &str) -> Result<Vec<u8>, String> {
        let bad = |what: &str| format!("`{value}` is not {what} (the type of {})", def.name);
        Ok(match def.kind {
            Kind::String => value.as_bytes().to_vec(),
            Kind::Octets => match value.strip_prefix("0x") {
                Some(hex) => hex::decode(hex).map_err(|_| bad("hex after 0x"))?,
                None => value.as_bytes().to_vec(),
            },
            Kind::Integer | Kind::Date => {
                let named = self
                    .values
                    .get(&(def.name.to_ascii_lowercase(), value.to_ascii_lowercase()));
                let number = match named {
                    Some(n) => *n,
                    None => value.parse::<u32>().map_err(|_| bad("a number or a VALUE name"))?,
                };
                number.to_be_bytes().to_vec()
            }
            Kind::IpAddr => value
                .parse::<Ipv4Addr>()
                .map_err(|_| bad("an IPv4 address"))?
                .octets()
                .to_vec(),
            Kind::Ipv6Addr => value
                .parse::<Ipv6Addr>()
                .map_err(|_| bad("an IPv6 address"))?
                .octets()
                .to_vec(),
        })
    }

    /// The first value of `def` in a packet, looking inside Vendor-Specific
    /// attributes for a vendor attribute.
    pub fn find<'a>(&self, packet: &Packet<'a>, def: &AttrDef) -> Option<&'a [u8]> {
        let Some(vendor) = def.vendor else {
            return packet.first(def.code);
        };
        packet
            .attributes()
            .filter(|a| a.attr_type == attr::VENDOR_SPECIFIC && a.value.len() >= 6)
            .filter(|a| a.value[..4] == vendor.to_be_bytes())
            .find_map(|a| sub_attribute(&a.value[4..], def.code))
    }
}

/// A vendor sub-attribute's value (RFC 2865 §5.26's suggested format).
fn sub_attribute(mut rest: &[u8], code: u8) -> Option<&[u8]> {
    while rest.len() >= 2 {
        let len = usize::from(rest[1]);
        if len < 2 || len > rest.len() {
            return None;
        }
        if rest[0] == code {
            return Some(&rest[2..len]);
        }
        rest = &rest[len..];
    }
    None
}

fn parse_kind(kind: &str) -> Option<Kind> {
    Some(match kind {
        "string" => Kind::String,
        "octets" => Kind::Octets,
        "integer" => Kind::Integer,
        "ipaddr" => Kind::IpAddr,
        "ipv6addr" => Kind::Ipv6Addr,
        "date" => Kind::Date,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Code, ResponseBuilder};

    #[test]
    fn the_embedded_dictionary_loads_rfc_and_vendor_attributes() {
        let d = Dictionary::embedded().unwrap();
        assert_eq!(d.attribute("filter-id").unwrap().code, 11);
        let email = d.attribute("Mailotp-Email").unwrap();
        assert_eq!((email.vendor, email.code, email.kind), (Some(32473), 1, Kind::String));
        assert!(d.attribute("Message-Authenticator").is_some());
        assert!(d.attribute("No-Such-Thing").is_none());
    }

    #[test]
    fn values_encode_by_type() {
        let d = Dictionary::embedded().unwrap();
        let enc = |n: &str, v: &str| d.encode(n, v).map(|a| (a.attr_type, a.value));
        assert_eq!(enc("Class", "vpn-staff"), Ok((25, b"vpn-staff".to_vec())));
        assert_eq!(enc("Class", "0x0102"), Ok((25, vec![1, 2])));
        assert_eq!(enc("Session-Timeout", "3600"), Ok((27, vec![0, 0, 0x0e, 0x10])));
        assert_eq!(enc("Service-Type", "Framed-User"), Ok((6, vec![0, 0, 0, 2])));
        assert_eq!(enc("Framed-IP-Address", "10.0.0.7"), Ok((8, vec![10, 0, 0, 7])));
        assert_eq!(
            enc("Mailotp-Email", "a@b.c"),
            Ok((26, vec![0, 0, 0x7e, 0xd9, 1, 7, b'a', b'@', b'b', b'.', b'c']))
        );
        assert_eq!(
            enc("Session-Timeout", "soon").unwrap_err(),
            "`soon` is not a number or a VALUE name (the type of Session-Timeout)"
        );
        assert_eq!(
            enc("Colour", "blue").unwrap_err(),
            "`Colour` is not an attribute of the dictionary"
        );
    }

    #[test]
    fn vendor_attributes_are_found_in_packets() {
        let d = Dictionary::embedded().unwrap();
        let def = d.attribute("Mailotp-Email").unwrap().clone();
        let vsa = d.encode("Mailotp-Email", "alice@corp.test").unwrap();
        let mut b = ResponseBuilder::new(Code::AccessAccept, 1);
        b.push(attr::VENDOR_SPECIFIC, &[0, 0, 0, 9, 1, 3, b'x']); // another vendor
        b.push(vsa.attr_type, &vsa.value);
        let bytes = b.finish(&[0; 16], b"s");
        let packet = Packet::decode(&bytes).unwrap();
        assert_eq!(d.find(&packet, &def), Some(&b"alice@corp.test"[..]));
        let filter = d.attribute("Filter-Id").unwrap();
        assert_eq!(d.find(&packet, filter), None);
    }

    #[test]
    fn mistakes_in_files_name_file_and_line() {
        let mut d = Dictionary::default();
        let files = |name: &str| match name {
            "main" => Some("ATTRIBUTE A 1 string\n$INCLUDE other\n".to_owned()),
            "other" => Some("# fine\nATTRIBUTE B 2 tlv\n".to_owned()),
            _ => None,
        };
        let err = d.load("main", &files).unwrap_err();
        assert_eq!(err.to_string(), "dictionary other, line 2: type `tlv` is not supported");
    }
}
