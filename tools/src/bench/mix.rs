//! The mix of channels the load generator files on: `web=80,grpc=20`.
//!
//! Only the online channel has an intake service today, reached two ways:
//! `web` is JSON through the gateway (what a browser does) and `grpc` is
//! `guichet.v1.OnlineIntake/SubmitFiling` straight to intake-web (what the
//! gateway itself does). The other channels of the product (`ccc`, `pan`,
//! `postal`) are known names, refused with a clear message until their intake
//! services exist, so adding one is a new arm here and in `load`.

use std::fmt;

/// How a filing reaches Guichet in the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// `POST /api/v1/dossiers` on the gateway, JSON.
    Web,
    /// `guichet.v1.OnlineIntake/SubmitFiling` on intake-web, protobuf.
    Grpc,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Web => "web",
            Route::Grpc => "grpc",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Channels of the product that have no intake service to drive yet.
const NOT_YET_SERVED: [&str; 3] = ["ccc", "pan", "postal"];

/// Each route with its weight; weights are relative (they need not sum to 100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(Vec<(Route, u32)>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MixError {
    #[error("`{0}` is not `channel=weight` (for example web=80,grpc=20)")]
    Malformed(String),
    #[error("the weight of `{0}` is not a whole number")]
    BadWeight(String),
    #[error(
        "channel `{0}` has no intake service to benchmark yet; today the bench drives web and grpc"
    )]
    NotYetServed(String),
    #[error("unknown channel `{0}`; known: web, grpc (and, once served, ccc, pan, postal)")]
    Unknown(String),
    #[error("channel `{0}` is named twice")]
    Repeated(String),
    #[error("every weight is zero: nothing to file")]
    Empty,
}

impl Mix {
    pub fn parse(text: &str) -> Result<Self, MixError> {
        let mut parts = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, weight) = item
                .split_once('=')
                .ok_or_else(|| MixError::Malformed(item.to_string()))?;
            let name = name.trim().to_ascii_lowercase();
            let route = match name.as_str() {
                "web" => Route::Web,
                "grpc" => Route::Grpc,
                n if NOT_YET_SERVED.contains(&n) => return Err(MixError::NotYetServed(name)),
                _ => return Err(MixError::Unknown(name)),
            };
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| MixError::BadWeight(name.clone()))?;
            if parts.iter().any(|(r, _)| *r == route) {
                return Err(MixError::Repeated(name));
            }
            parts.push((route, weight));
        }
        parts.retain(|(_, w)| *w > 0);
        if parts.is_empty() {
            return Err(MixError::Empty);
        }
        if parts.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() > 10_000 {
            return Err(MixError::Malformed(format!(
                "{text} (weights are shares: keep their sum at most 10000)"
            )));
        }
        Ok(Mix(parts))
    }

    /// The route of each of `n` filings. Spread evenly rather than drawn at
    /// random, so a short smoke run still has each channel in its proportion.
    pub fn plan(&self, n: usize) -> Vec<Route> {
        self.cycle().into_iter().cycle().take(n).collect()
    }

    /// One cycle of routes, each route as many times as its weight, spread by
    /// smooth weighted round robin (the route furthest behind goes next).
    fn cycle(&self) -> Vec<Route> {
        let total: i64 = self.0.iter().map(|(_, w)| i64::from(*w)).sum();
        let mut credit = vec![0i64; self.0.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, (_, w)) in credit.iter_mut().zip(&self.0) {
                *c += i64::from(*w);
            }
            let (next, _) = credit
                .iter()
                .enumerate()
                .max_by_key(|(k, c)| (**c, std::cmp::Reverse(*k)))
                .expect("a mix has at least one route");
            credit[next] -= total;
            cycle.push(self.0[next].0);
        }
        cycle
    }

    pub fn routes(&self) -> impl Iterator<Item = Route> + '_ {
        self.0.iter().map(|(r, _)| *r)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(r, w)| format!("{r}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for Mix {
    type Err = MixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mix::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_table() {
        let table: [(&str, Result<Mix, MixError>); 9] = [
            (
                "web=80,grpc=20",
                Ok(Mix(vec![(Route::Web, 80), (Route::Grpc, 20)])),
            ),
            ("web=1", Ok(Mix(vec![(Route::Web, 1)]))),
            (" WEB = 3 , grpc=0", Ok(Mix(vec![(Route::Web, 3)]))),
            ("ccc=10", Err(MixError::NotYetServed("ccc".into()))),
            (
                "web=50,postal=50",
                Err(MixError::NotYetServed("postal".into())),
            ),
            ("fax=1", Err(MixError::Unknown("fax".into()))),
            ("web", Err(MixError::Malformed("web".into()))),
            ("web=x", Err(MixError::BadWeight("web".into()))),
            ("web=0", Err(MixError::Empty)),
        ];
        for (text, expected) in table {
            assert_eq!(Mix::parse(text), expected, "{text}");
        }
        assert_eq!(
            Mix::parse("web=1,web=2"),
            Err(MixError::Repeated("web".into()))
        );
    }

    #[test]
    fn routes_follow_the_weights() {
        let plan = Mix::parse("web=80,grpc=20").expect("valid mix").plan(1000);
        assert_eq!(plan.len(), 1000);
        let grpc = plan.iter().filter(|r| **r == Route::Grpc).count();
        assert_eq!(grpc, 200);
        // Spread out: every ten filings in a row carry two gRPC ones.
        for ten in plan.chunks(10) {
            assert_eq!(ten.iter().filter(|r| **r == Route::Grpc).count(), 2);
        }
        let only = Mix::parse("grpc=5").expect("valid mix").plan(50);
        assert!(only.iter().all(|r| *r == Route::Grpc));
    }
}
