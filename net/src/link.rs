//! The Zenoh session of a node: peer (default) or client mode, multicast scouting off, and
//! the endpoints the graph gives. Nodes of one process with the same settings share one
//! session (one set of links and one listening socket), as Zenoh recommends.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use weir_engine::{NodeError, OptionSpec, OptionType};
use zenoh::{Config, Session, Wait};

/// Open sessions by their settings, with how many nodes use each.
static SESSIONS: Mutex<Option<HashMap<String, (Session, usize)>>> = Mutex::new(None);

/// A node's use of a shared session; the session closes when its last user drops.
pub(crate) struct Shared {
    id: String,
    session: Session,
}

impl Shared {
    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let mut sessions = SESSIONS.lock().unwrap_or_else(PoisonError::into_inner);
        let map = sessions.get_or_insert_with(HashMap::new);
        let last = match map.get_mut(&self.id) {
            Some((_, users)) => {
                *users -= 1;
                *users == 0
            }
            None => false,
        };
        if last {
            if let Some((session, _)) = map.remove(&self.id) {
                let _ = session.close().wait();
            }
        }
    }
}

/// Session modes a node accepts.
pub(crate) const MODES: &[&str] = &["peer", "client"];

/// The options every net node has, besides its own.
pub(crate) fn options() -> Vec<OptionSpec> {
    vec![
        OptionSpec::required(
            "key",
            OptionType::Str,
            "Zenoh key expression of the stream (e.g. `weir/mic`)",
        ),
        OptionSpec::with_default(
            "mode",
            OptionType::Choice(MODES),
            "peer",
            "peer: direct links to the endpoints; client: through the router given in `connect`",
        ),
        OptionSpec::with_default(
            "connect",
            OptionType::Str,
            "",
            "endpoints to connect to, comma-separated (e.g. `tcp/192.168.1.20:7447`)",
        ),
        OptionSpec::with_default(
            "listen",
            OptionType::Str,
            "",
            "endpoints to listen on, comma-separated (e.g. `tcp/0.0.0.0:7447`)",
        ),
        OptionSpec::with_default(
            "multicast_scouting",
            OptionType::Bool,
            false,
            "find peers on the LAN by UDP multicast (off: only the endpoints given)",
        ),
    ]
}

/// Where and how a node's session connects.
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct Link {
    pub key: String,
    pub mode: String,
    pub connect: String,
    pub listen: String,
    pub multicast_scouting: bool,
}

fn endpoints(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

impl Link {
    /// The Zenoh configuration of this link.
    pub fn config(&self) -> Result<Config, NodeError> {
        let bad = |what: &str, e: zenoh::Error| {
            NodeError::new(format!("invalid Zenoh setting {what}: {e}"))
        };
        let json = |v: &[&str]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let mut config = Config::default();
        config
            .insert_json5("mode", &format!("\"{}\"", self.mode))
            .map_err(|e| bad("mode", e))?;
        config
            .insert_json5(
                "scouting/multicast/enabled",
                if self.multicast_scouting {
                    "true"
                } else {
                    "false"
                },
            )
            .map_err(|e| bad("multicast_scouting", e))?;
        config
            .insert_json5("connect/endpoints", &json(&endpoints(&self.connect)))
            .map_err(|e| bad(&format!("connect `{}`", self.connect), e))?;
        // Lost links are retried with back-off: 250 ms, doubling, at most 4 s apart.
        config
            .insert_json5(
                "connect/retry",
                "{ period_init_ms: 250, period_max_ms: 4000, period_increase_factor: 2 }",
            )
            .map_err(|e| bad("connect/retry", e))?;
        config
            .insert_json5("listen/endpoints", &json(&endpoints(&self.listen)))
            .map_err(|e| bad(&format!("listen `{}`", self.listen), e))?;
        Ok(config)
    }

    /// The session of these settings, opened by the first node that asks (blocking).
    pub fn open(&self) -> Result<Shared, NodeError> {
        let id = format!(
            "{}|{}|{}|{}",
            self.mode, self.connect, self.listen, self.multicast_scouting
        );
        let mut sessions = SESSIONS.lock().unwrap_or_else(PoisonError::into_inner);
        let map = sessions.get_or_insert_with(HashMap::new);
        if let Some((session, users)) = map.get_mut(&id) {
            *users += 1;
            return Ok(Shared {
                id,
                session: session.clone(),
            });
        }
        let session = self.open_new()?;
        map.insert(id.clone(), (session.clone(), 1));
        Ok(Shared { id, session })
    }

    fn open_new(&self) -> Result<Session, NodeError> {
        if self.mode == "client" && endpoints(&self.connect).is_empty() {
            return Err(NodeError::new(
                "mode `client` needs a router in `connect` (e.g. tcp/192.168.1.1:7447)",
            ));
        }
        zenoh::open(self.config()?).wait().map_err(|e| {
            NodeError::new(format!(
                "cannot open a Zenoh session (connect `{}`, listen `{}`): {e}",
                self.connect, self.listen
            ))
        })
    }
}
