//! Tenants: who a request belongs to, from `X-Scope-OrgID`, checked with
//! Loki's (dskit's) rules.

use crate::error_code::{Coded, ErrorCode};

/// The tenant of every request when `auth_enabled` is false.
pub const DEFAULT_TENANT: &str = "fake";

/// Longest tenant id.
pub const MAX_TENANT_ID_LENGTH: usize = 150;

/// Why a request has no usable tenant.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantError {
    #[error("no org id")]
    NoOrgId,
    #[error("tenant ID '{id}' contains unsupported character '{c}'")]
    UnsupportedCharacter { id: String, c: char },
    #[error("tenant ID is too long: max {MAX_TENANT_ID_LENGTH} characters")]
    TooLong,
    #[error("tenant ID is '.' or '..'")]
    Dots,
    #[error("multiple org IDs present")]
    TooManyOrgIds,
    #[error("empty tenant ID in {0:?}")]
    Empty(String),
}

/// Second line of the 401 answer: how to send a tenant.
pub const NO_ORG_ID_HINT: &str = "hint: auth_enabled is true, so every request needs an X-Scope-OrgID header naming \
the tenant (in Grafana: Loki data source > HTTP headers > X-Scope-OrgID)";

impl Coded for TenantError {
    fn code(&self) -> ErrorCode {
        match self {
            TenantError::NoOrgId => ErrorCode::Unauthenticated,
            _ => ErrorCode::BadRequest,
        }
    }

    fn http_body(&self) -> String {
        match self {
            TenantError::NoOrgId => format!("{self}\n{NO_ORG_ID_HINT}\n"),
            _ => format!("{self}\n"),
        }
    }
}

/// The tenant of a write given its `X-Scope-OrgID` header (one tenant).
pub fn resolve(auth_enabled: bool, header: Option<&str>) -> Result<String, TenantError> {
    let mut all = resolve_many(auth_enabled, header)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        _ => Err(TenantError::TooManyOrgIds),
    }
}

/// The tenants of a read: `X-Scope-OrgID: a|b` queries several.
pub fn resolve_many(auth_enabled: bool, header: Option<&str>) -> Result<Vec<String>, TenantError> {
    if !auth_enabled {
        return Ok(vec![DEFAULT_TENANT.to_string()]);
    }
    let header = header.map(str::trim).filter(|s| !s.is_empty()).ok_or(TenantError::NoOrgId)?;
    let mut out: Vec<String> = Vec::new();
    for id in header.split('|') {
        if id.is_empty() {
            return Err(TenantError::Empty(header.to_string()));
        }
        validate(id)?;
        if !out.iter().any(|t| t == id) {
            out.push(id.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// dskit's `ValidTenantID`: `a-z A-Z 0-9 ! - _ . * ' ( )`, at most 150
/// characters, and not `.` or `..`.
pub fn validate(id: &str) -> Result<(), TenantError> {
    if let Some(c) = id.chars().find(|&c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(c))) {
        return Err(TenantError::UnsupportedCharacter { id: id.to_string(), c });
    }
    if id.len() > MAX_TENANT_ID_LENGTH {
        return Err(TenantError::TooLong);
    }
    if id == "." || id == ".." {
        return Err(TenantError::Dots);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lokis_rules() {
        assert_eq!(resolve(false, None).unwrap(), "fake");
        assert_eq!(resolve(true, None), Err(TenantError::NoOrgId));
        assert_eq!(resolve(true, Some("team-a_1.(x)")).unwrap(), "team-a_1.(x)");
        assert_eq!(resolve(true, Some("../etc")).unwrap_err().to_string(), "tenant ID '../etc' contains unsupported character '/'");
        assert_eq!(resolve(true, Some("..")), Err(TenantError::Dots));
        assert_eq!(resolve(true, Some(&"a".repeat(151))), Err(TenantError::TooLong));
        assert!(resolve(true, Some(&"a".repeat(150))).is_ok());
        assert_eq!(resolve(true, Some("a|b")), Err(TenantError::TooManyOrgIds));
        assert_eq!(resolve_many(true, Some("b|a|b")).unwrap(), vec!["a", "b"]);
        assert!(resolve_many(true, Some("a||b")).is_err());
    }
}
