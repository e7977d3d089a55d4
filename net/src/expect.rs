//! What a subscriber expects, announced to publishers: each subscriber declares a Zenoh
//! liveliness token `weir_expects/v{VERSION}/{types}/{key}` (`types`: its port type names
//! joined by `+`). A publisher watches the tokens of its key and refuses to send a packet
//! type, or to speak an encoding version, that a subscriber does not read, so a mismatch is
//! reported on both sides, not only where the packets arrive.

use crossbeam_channel::Receiver;
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::Subscriber;
use zenoh::sample::SampleKind;
use zenoh::Wait;

use crate::link::Shared;
use crate::wire::VERSION;

/// The first chunk of every expectation token.
const PREFIX: &str = "weir_expects";

/// The first chunk of every publisher's token.
const PUBLISHER: &str = "weir_publishes";

/// Declares that a publisher of `key` is alive (`weir_publishes/{key}`), so subscribers can
/// tell when it goes away.
pub(crate) fn announce_publisher(session: &Shared, key: &str) -> Result<LivelinessToken, String> {
    declare_token(session, format!("{PUBLISHER}/{key}"))
}

/// Logs the publishers of `key` going away (their process ended or the link went down)
/// and coming back, as seen from a subscriber.
pub(crate) fn watch_publishers(session: &Shared, key: &str) -> Result<Subscriber<()>, String> {
    let own = key.to_string();
    let mut seen = false;
    session
        .session()
        .liveliness()
        .declare_subscriber(format!("{PUBLISHER}/{key}"))
        .history(true)
        .callback_mut(move |sample| match sample.kind() {
            SampleKind::Delete => tracing::warn!(
                key = %own,
                "the publisher is gone (its process ended or the link is down); waiting for it"
            ),
            SampleKind::Put if seen => {
                tracing::warn!(key = %own, "a publisher is back: receiving again")
            }
            SampleKind::Put => seen = true,
        })
        .wait()
        .map_err(|e| format!("cannot watch the publishers of `{key}`: {e}"))
}

/// Declares what a subscriber of `key` reads (port types `ports`, this encoding version).
pub(crate) fn declare(
    session: &Shared,
    key: &str,
    ports: &[&str],
) -> Result<LivelinessToken, String> {
    declare_token(
        session,
        format!("{PREFIX}/v{VERSION}/{}/{key}", ports.join("+")),
    )
}

/// Declares the liveliness token `token` on the session.
fn declare_token(session: &Shared, token: String) -> Result<LivelinessToken, String> {
    session
        .session()
        .liveliness()
        .declare_token(token.clone())
        .wait()
        .map_err(|e| format!("cannot declare `{token}`: {e}"))
}

/// One subscriber's expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expectation {
    /// The encoding version it reads.
    pub version: String,
    /// The port types it reads.
    pub ports: Vec<String>,
}

impl Expectation {
    /// Parses a token's key for `key`; `None` for another key or a malformed token.
    fn parse(token: &str, key: &str) -> Option<Expectation> {
        let rest = token.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let (version, rest) = rest.split_once('/')?;
        let (ports, subscribed) = rest.split_once('/')?;
        (subscribed == key).then(|| Expectation {
            version: version.trim_start_matches('v').to_string(),
            ports: ports.split('+').map(str::to_string).collect(),
        })
    }

    /// Why a publisher of `port` packets cannot serve this subscriber, if it cannot.
    pub fn refuses(&self, port: &str, key: &str) -> Option<String> {
        if self.version != VERSION.to_string() {
            return Some(format!(
                "a subscriber of key `{key}` reads encoding version {}, this build writes \
                 version {VERSION}: run the same Weir version on both sides",
                self.version
            ));
        }
        (!self.ports.iter().any(|p| p == port)).then(|| {
            format!(
                "a subscriber of key `{key}` expects `{}` packets but this publisher sends \
                 `{port}`: subscribe with net.subscribe_{port} or publish {} packets on this key",
                self.ports.join("` or `"),
                self.ports.join(" or ")
            )
        })
    }
}

/// The expectations of the subscribers of a key, as they come and go.
pub(crate) struct Watch {
    _subscriber: Subscriber<()>,
    /// New expectations (present and future).
    pub arrivals: Receiver<Expectation>,
}

/// Watches the expectation tokens of `key`.
pub(crate) fn watch(session: &Shared, key: &str) -> Result<Watch, String> {
    let (tx, arrivals) = crossbeam_channel::unbounded();
    let own = key.to_string();
    let subscriber = session
        .session()
        .liveliness()
        .declare_subscriber(format!("{PREFIX}/**"))
        .history(true)
        .callback(move |sample| {
            if sample.kind() != SampleKind::Put {
                return;
            }
            if let Some(e) = Expectation::parse(sample.key_expr().as_str(), &own) {
                let _ = tx.send(e);
            }
        })
        .wait()
        .map_err(|e| format!("cannot watch subscribers' expectations: {e}"))?;
    Ok(Watch {
        _subscriber: subscriber,
        arrivals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_for_its_key_only() {
        let t = format!("{PREFIX}/v{VERSION}/segment+event/weir/split/draft");
        let e = Expectation::parse(&t, "weir/split/draft").unwrap();
        assert_eq!(e.ports, ["segment", "event"]);
        assert!(e.refuses("event", "k").is_none());
        assert!(Expectation::parse(&t, "weir/split").is_none());
        assert!(Expectation::parse("other/v1/audio/k", "k").is_none());
    }

    #[test]
    fn another_type_or_version_is_refused_with_the_fix() {
        let e = Expectation::parse(&format!("{PREFIX}/v{VERSION}/text/k"), "k").unwrap();
        let why = e.refuses("audio", "k").unwrap();
        assert!(
            why.contains("expects `text` packets but this publisher sends `audio`"),
            "{why}"
        );
        let e = Expectation::parse(&format!("{PREFIX}/v9/audio/k"), "k").unwrap();
        let why = e.refuses("audio", "k").unwrap();
        assert!(why.contains("reads encoding version 9"), "{why}");
    }
}
