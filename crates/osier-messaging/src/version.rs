//! RPC API versions and oslo's compatibility rule (MSG-DISP-04, MSG-RPC-02).

use std::fmt;
use std::str::FromStr;

use crate::error::MessagingError;

/// An `X.Y[.Z]` RPC API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major: incompatible changes.
    pub major: u32,
    /// Minor: compatible additions.
    pub minor: u32,
    /// Revision; a missing one counts as 0 when compared.
    pub rev: Option<u32>,
}

impl FromStr for Version {
    type Err = MessagingError;

    /// `int.int[.int]`; `"5"`, `"5.a"` and `"5.5.a"` are refused (MSG-RPC-02).
    fn from_str(s: &str) -> Result<Self, MessagingError> {
        let bad = || MessagingError::InvalidVersion(s.to_string());
        let mut parts = s.split('.');
        let (Some(major), Some(minor), rev, None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let num = |p: &str| p.parse::<u32>().map_err(|_| bad());
        Ok(Version {
            major: num(major)?,
            minor: num(minor)?,
            rev: rev.map(num).transpose()?,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rev {
            Some(r) => write!(f, "{}.{}.{}", self.major, self.minor, r),
            None => write!(f, "{}.{}", self.major, self.minor),
        }
    }
}

/// oslo's `version_is_compatible(imp, req)` (MSG-DISP-04): can an implementation at `imp` serve
/// a request for `req`? `imp` None is compatible with everything; `req` None with nothing.
pub fn version_is_compatible(imp: Option<&Version>, req: Option<&Version>) -> bool {
    let Some(imp) = imp else { return true };
    let Some(req) = req else { return false };
    if imp.major != req.major || req.minor > imp.minor {
        return false;
    }
    if req.minor == imp.minor {
        return req.rev.unwrap_or(0) <= imp.rev.unwrap_or(0);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    /// MSG-DISP-04 / TEST-MSG-02: oslo's compatibility table.
    #[test]
    fn version_is_compatible_table() {
        let table = [
            ("1.23", "1.23", true),
            ("1.24", "1.23", true),
            ("1.22", "1.23", false),
            ("2.23", "1.23", false),
            ("1.23", "2.23", false),
            ("1.23", "1.23.1", false),
            ("1.23.1", "1.23.2", false),
            ("1.23.2", "1.23.1", true),
            ("1.24", "1.23.1", true),
            ("1.23.0", "1.23", true),
        ];
        for (imp, req, want) in table {
            assert_eq!(
                version_is_compatible(Some(&v(imp)), Some(&v(req))),
                want,
                "imp {imp} req {req}"
            );
        }
        assert!(version_is_compatible(None, None));
        assert!(!version_is_compatible(Some(&v("1.0")), None));
    }

    /// MSG-RPC-02 / TEST-MSG-05: malformed versions are refused.
    #[test]
    fn malformed_versions_are_refused() {
        for bad in [
            "5", "5.a", "5.5.a", "", "1.2.3.4", "-1.0", "1..2", "1.2.", ".1.2",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        assert_eq!(v("1.2").to_string(), "1.2");
    }
}
