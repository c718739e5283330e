//! uid -> user name through NSS (`getpwuid_r`), cached for the daemon's
//! life. A uid with no name shows as its number, as Sysmon does.

use std::{collections::HashMap, ffi::CStr, fmt, sync::Arc};

use serde::{Deserialize, Deserializer, de};

#[derive(Default)]
pub struct Users {
    cache: HashMap<u32, Arc<str>>,
}

impl Users {
    pub fn name(&mut self, uid: u32) -> Arc<str> {
        self.cache
            .entry(uid)
            .or_insert_with(|| lookup(uid).unwrap_or_else(|| uid.to_string()).into())
            .clone()
    }
}

fn lookup(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid out-parameter.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: buf outlives the call and its length is passed; pwd and
        // result are valid out-parameters.
        let r = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points at a NUL-terminated string in buf.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_unknown_uids_show_the_number() {
        let mut users = Users::default();
        assert_eq!(&*users.name(0), "root");
        assert_eq!(&*users.name(3_999_999_999), "3999999999");
    }
}

/// A user as a config names one: by name, or by uid (a number, or a
/// string of digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    Uid(u32),
    Name(String),
}

impl<'de> Deserialize<'de> for UserRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = UserRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a user name or a uid")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UserRef, E> {
                u32::try_from(v)
                    .map(UserRef::Uid)
                    .map_err(|_| E::custom(format!("uid {v} is out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<UserRef, E> {
                if v.is_empty() {
                    return Err(E::custom("empty user name"));
                }
                Ok(match v.parse::<u32>() {
                    Ok(uid) => UserRef::Uid(uid),
                    Err(_) => UserRef::Name(v.to_owned()),
                })
            }
        }
        d.deserialize_any(V)
    }
}
