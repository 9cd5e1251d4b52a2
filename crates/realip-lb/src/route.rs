//! Host and path routing, the ingress role (pure).
//!
//! A route matches a host (exact, or `*.example.com` for one label or
//! more, case-insensitive, the port ignored; none means any host) and a
//! path prefix. Prefixes match whole path segments, as a Kubernetes
//! Ingress `pathType: Prefix` does: `/api` matches `/api`, `/api/` and
//! `/api/v1`, not `/apis`. Among the routes that match, an exact host beats
//! a wildcard, a wildcard beats none, and then the longest prefix wins.

/// One route: which requests go to which pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<T> {
    /// The host, lower case; `*.` prefix for a wildcard; `None` for any.
    pub host: Option<String>,
    /// The path prefix, starting with `/`.
    pub prefix: String,
    /// What the route leads to (a pool).
    pub target: T,
}

/// A route table, searched per request.
#[derive(Debug, Clone)]
pub struct Routes<T> {
    routes: Vec<Route<T>>,
}

/// A route that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The prefix does not start with `/`.
    #[error("path prefix {0:?} does not start with /")]
    Prefix(String),
    /// The host is empty, or has a wildcard anywhere but in front.
    #[error("host {0:?} is not a host name or *.domain")]
    Host(String),
}

impl<T> Route<T> {
    /// A route, checked and normalised.
    pub fn new(host: Option<&str>, prefix: &str, target: T) -> Result<Self, RouteError> {
        if !prefix.starts_with('/') {
            return Err(RouteError::Prefix(prefix.to_string()));
        }
        let host = match host {
            None => None,
            Some(h) => {
                let bare = h.strip_prefix("*.").unwrap_or(h);
                if bare.is_empty()
                    || !bare
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
                {
                    return Err(RouteError::Host(h.to_string()));
                }
                Some(h.to_ascii_lowercase())
            }
        };
        // "/api/" and "/api" mean the same prefix.
        let prefix = match prefix.trim_end_matches('/') {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        Ok(Route {
            host,
            prefix,
            target,
        })
    }

    fn host_rank(&self, host: &str) -> Option<u8> {
        match &self.host {
            None => Some(0),
            Some(h) => match h.strip_prefix('*') {
                // "*.example.com" matches "a.example.com", not "example.com".
                Some(suffix) => (host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|s| s.eq_ignore_ascii_case(suffix)))
                .then_some(1),
                None => h.eq_ignore_ascii_case(host).then_some(2),
            },
        }
    }

    fn path_matches(&self, path: &str) -> bool {
        if self.prefix == "/" {
            return true;
        }
        match path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl<T> Routes<T> {
    /// A table of routes.
    pub fn new(routes: Vec<Route<T>>) -> Self {
        Routes { routes }
    }

    /// The route for a request to `host` (Host header or `:authority`,
    /// port allowed) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Route<T>> {
        let host = host.map(strip_port).unwrap_or("");
        self.routes
            .iter()
            .filter(|r| r.path_matches(path))
            .filter_map(|r| r.host_rank(host).map(|rank| (rank, r.prefix.len(), r)))
            // Earlier routes win ties: max_by_key keeps the last maximum,
            // so search in reverse.
            .rev()
            .max_by_key(|(rank, len, _)| (*rank, *len))
            .map(|(_, _, r)| r)
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Routes<&'static str> {
        Routes::new(vec![
            Route::new(None, "/", "default").unwrap(),
            Route::new(None, "/api", "api").unwrap(),
            Route::new(Some("Shop.Example"), "/", "shop").unwrap(),
            Route::new(Some("shop.example"), "/api/v2/", "shop-v2").unwrap(),
            Route::new(Some("*.example"), "/", "wild").unwrap(),
        ])
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table();
        let find = |h: Option<&str>, p: &str| t.find(h, p).map(|r| r.target);
        assert_eq!(find(None, "/"), Some("default"));
        assert_eq!(find(Some("other"), "/api"), Some("api"));
        assert_eq!(find(Some("other"), "/api/x"), Some("api"));
        assert_eq!(find(Some("other"), "/apis"), Some("default"));
        assert_eq!(find(Some("SHOP.example:8080"), "/api/v2"), Some("shop-v2"));
        assert_eq!(find(Some("shop.example"), "/api/v1"), Some("shop"));
        assert_eq!(find(Some("a.b.example"), "/api"), Some("wild"));
        assert_eq!(find(Some("example"), "/x"), Some("default"));
        assert_eq!(find(Some("[::1]:80"), "/api"), Some("api"));
    }

    #[test]
    fn no_route_and_bad_routes() {
        let t = Routes::new(vec![Route::new(Some("a.example"), "/x", 1).unwrap()]);
        assert!(t.find(Some("b.example"), "/x").is_none());
        assert!(t.find(Some("a.example"), "/").is_none());
        assert!(Route::new(None, "api", 1).is_err());
        assert!(Route::new(Some("a.*.b"), "/", 1).is_err());
        assert!(Route::new(Some(""), "/", 1).is_err());
    }
}
