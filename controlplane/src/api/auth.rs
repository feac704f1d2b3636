//! Who is calling, and in which org/project.
//!
//! A bearer token (`authorization: Bearer <token>`) is bound to one org/project: requests made
//! with it act there, whatever they name, and naming another scope is refused. Without a token,
//! only the Unix socket accepts calls (when `require_token` is off): whoever can open the 0600
//! socket is the node's administrator and names the org/project in each request.

use std::collections::HashMap;

use tonic::{Request, Status};

use crate::model::Scope;
use crate::pb;

/// The access rules of one listener.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    tokens: HashMap<String, Scope>,
    /// Calls without a token are allowed (the local Unix socket without `require_token`).
    allow_anonymous: bool,
}

/// The caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Local administrator: acts in whatever scope the request names.
    Admin,
    /// A token holder, confined to one scope.
    Tenant(Scope),
}

impl Auth {
    /// Rules with `tokens` (token → scope); `allow_anonymous` for the local socket.
    pub fn new(tokens: impl IntoIterator<Item = (String, Scope)>, allow_anonymous: bool) -> Self {
        Auth {
            tokens: tokens.into_iter().collect(),
            allow_anonymous,
        }
    }

    /// Identifies the caller of `req`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a missing (where required), malformed or unknown token.
    pub fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let Some(value) = req.metadata().get("authorization") else {
            return if self.allow_anonymous {
                Ok(Caller::Admin)
            } else {
                Err(Status::unauthenticated(
                    "missing bearer token: pass --token or set FIBERLB_TOKEN",
                ))
            };
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("malformed authorization header: use `Bearer <token>`")
            })?;
        // Compare against every token without stopping early, so timing does not reveal
        // how much of a guess matched.
        let mut found = None;
        for (t, scope) in &self.tokens {
            if constant_time_eq(t.as_bytes(), token.as_bytes()) {
                found = Some(scope);
            }
        }
        found
            .map(|s| Caller::Tenant(s.clone()))
            .ok_or_else(|| Status::unauthenticated("unknown token: check --token / FIBERLB_TOKEN"))
    }

    /// The scope `req` acts in, given the scope it names.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` (see [`Auth::caller`]), `PERMISSION_DENIED` when a token holder names
    /// another scope, `INVALID_ARGUMENT` naming `scope.org_id` / `scope.project_id` when an
    /// administrator names none.
    pub fn scope<T>(&self, req: &Request<T>, named: Option<&pb::Scope>) -> Result<Scope, Status> {
        let (org, project) = named
            .map(|s| (s.org_id.as_str(), s.project_id.as_str()))
            .unwrap_or(("", ""));
        match self.caller(req)? {
            Caller::Tenant(scope) => {
                if (!org.is_empty() && org != scope.org_id)
                    || (!project.is_empty() && project != scope.project_id)
                {
                    return Err(Status::permission_denied(format!(
                        "this token acts in {scope} only, not {org}/{project}"
                    )));
                }
                Ok(scope)
            }
            Caller::Admin => {
                let scope = Scope::new(org, project);
                scope.validate().map_err(|e| {
                    Status::invalid_argument(format!(
                        "scope.{e} (pass --org and --project, or use a token)"
                    ))
                })?;
                Ok(scope)
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    #[test]
    fn tokens_confine_and_admin_names() {
        let a = Auth::new(
            [("tok-acme-0123456789".to_string(), Scope::new("acme", "web"))],
            true,
        );
        let other = pb::Scope {
            org_id: "evil".into(),
            project_id: "x".into(),
        };
        assert_eq!(
            a.scope(&req(Some("tok-acme-0123456789")), None).unwrap(),
            Scope::new("acme", "web")
        );
        assert_eq!(
            a.scope(&req(Some("tok-acme-0123456789")), Some(&other))
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            a.scope(&req(Some("nope")), None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            a.scope(&req(None), Some(&other)).unwrap(),
            Scope::new("evil", "x")
        );
        let e = a.scope(&req(None), None).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("scope.org_id"), "{}", e.message());
        let strict = Auth::new([], false);
        assert_eq!(
            strict.scope(&req(None), Some(&other)).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
