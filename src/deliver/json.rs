//! The JSON document Secrets Manager and SSM hold:
//! `{"AccessKeyId":"AKIA…","SecretAccessKey":"…"}`, the shape AWS's own
//! rotation samples and most consumers read.

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::iam::CreatedKey;

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "AccessKeyId")]
    access_key_id: &'a str,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: &'a str,
}

/// The document for `key`, in a buffer that is wiped when dropped. The
/// buffer is sized up front so serde_json never reallocates it, which would
/// leave an unwiped copy of the secret behind.
pub(super) fn document(key: &CreatedKey) -> Zeroizing<String> {
    let secret = key.secret.expose_secret();
    // Every character escaped as \uXXXX is the worst case.
    let capacity = 64 + 6 * (key.id.len() + secret.len());
    let mut buffer = Zeroizing::new(Vec::with_capacity(capacity));
    let document = Document {
        access_key_id: &key.id,
        secret_access_key: secret,
    };
    // Serializing two strings into a Vec cannot fail.
    if serde_json::to_writer(&mut *buffer, &document).is_err() {
        buffer.clear();
    }
    let bytes = std::mem::take(&mut *buffer);
    // serde_json writes UTF-8 only.
    Zeroizing::new(String::from_utf8(bytes).unwrap_or_default())
}

#[derive(Serialize)]
struct ExecDocument<'a> {
    #[serde(rename = "AccessKeyId")]
    access_key_id: &'a str,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: &'a str,
    #[serde(rename = "UserName")]
    user_name: &'a str,
    #[serde(rename = "Account")]
    account: &'a str,
}

/// The document an `exec:` program reads on its standard input: the two
/// fields of [`document`], then `UserName` and `Account`. Wiped when
/// dropped, sized up front like [`document`].
pub(super) fn exec_document(key: &CreatedKey, user: &str, account: &str) -> Zeroizing<String> {
    let secret = key.secret.expose_secret();
    let capacity = 128 + 6 * (key.id.len() + secret.len() + user.len() + account.len());
    let mut buffer = Zeroizing::new(Vec::with_capacity(capacity));
    let document = ExecDocument {
        access_key_id: &key.id,
        secret_access_key: secret,
        user_name: user,
        account,
    };
    if serde_json::to_writer(&mut *buffer, &document).is_err() {
        buffer.clear();
    }
    let bytes = std::mem::take(&mut *buffer);
    Zeroizing::new(String::from_utf8(bytes).unwrap_or_default())
}

#[derive(Deserialize)]
struct KeyIdOnly {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
}

/// The `AccessKeyId` a document read back names; the secret in it is never
/// copied out.
pub(super) fn key_id_of(document: &str) -> Option<String> {
    serde_json::from_str::<KeyIdOnly>(document)
        .ok()
        .map(|d| d.access_key_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use secrecy::SecretString;

    #[test]
    fn the_document_has_the_two_fields_in_order() {
        let key = CreatedKey {
            id: "AKIAEXAMPLE000000001".into(),
            created_at: Utc::now(),
            secret: SecretString::from("wJalr/XUtnFEMI+K7MDENG\"bPxRfiCY\\EXAMPLE".to_string()),
        };
        let text = document(&key);
        assert_eq!(
            text.as_str(),
            r#"{"AccessKeyId":"AKIAEXAMPLE000000001","SecretAccessKey":"wJalr/XUtnFEMI+K7MDENG\"bPxRfiCY\\EXAMPLE"}"#
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value["SecretAccessKey"],
            "wJalr/XUtnFEMI+K7MDENG\"bPxRfiCY\\EXAMPLE"
        );
        assert_eq!(key_id_of(&text).as_deref(), Some("AKIAEXAMPLE000000001"));
    }

    #[test]
    fn the_exec_document_names_the_user_and_account() {
        let key = CreatedKey {
            id: "AKIAEXAMPLE000000001".into(),
            created_at: Utc::now(),
            secret: SecretString::from("s\"ecret".to_string()),
        };
        let text = exec_document(&key, "alice", "123456789012");
        assert_eq!(
            text.as_str(),
            r#"{"AccessKeyId":"AKIAEXAMPLE000000001","SecretAccessKey":"s\"ecret","UserName":"alice","Account":"123456789012"}"#
        );
    }

    #[test]
    fn a_document_without_a_key_id_names_none() {
        assert_eq!(key_id_of("{}"), None);
        assert_eq!(key_id_of("not json"), None);
        assert_eq!(
            key_id_of(r#"{"AccessKeyId":"AKIA1","Extra":1}"#).as_deref(),
            Some("AKIA1")
        );
    }
}
