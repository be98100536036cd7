//! Publishing each frame's targets to an MQTT broker (`run --publish mqtt://HOST:PORT/TOPIC`),
//! so that a tracker, a display or a recorder on another machine can subscribe, and a fleet of
//! boxes can feed one broker.
//!
//! Never blocking capture or inference: the emit stage only appends the message to a bounded
//! outbox under a mutex. A connection thread (rumqttc's blocking client) hands messages to the
//! broker, at most [`WINDOW`] unacknowledged at a time, and keeps every message until the broker
//! acknowledges it (QoS 1). When the connection drops, the unacknowledged ones go back to the
//! front of the outbox, in order, and are sent again after reconnecting; when the outbox is full
//! the oldest waiting message is dropped and counted (newer positions matter more to a tracker).
//!
//! Why our own outbox and not rumqttc's queue: rumqttc replays unacknowledged messages only when
//! the broker resumes the session, and on a fresh session (any broker restarted without
//! persistence, or any clean session) it discards them together with every request still in its
//! channel. A broker restart would then lose up to the whole buffer.
//!
//! QoS 1 is at-least-once: a message whose acknowledgement was lost in a disconnection is sent
//! again, so a subscriber may see a frame twice (deduplicate on `camera_id` + `frame`); order is
//! kept.

use anyhow::{bail, Result};

/// Unacknowledged messages in flight at once.
pub const WINDOW: usize = 32;

/// The default outbox bound, in messages.
pub const DEFAULT_BUFFER: usize = 1000;

/// A parsed `mqtt://HOST[:PORT]/TOPIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883 when the URL has none).
    pub port: u16,
    /// Topic every message is published to (may contain `/`, not the wildcards `+` and `#`).
    pub topic: String,
}

impl MqttUrl {
    /// Parses `mqtt://HOST[:PORT]/TOPIC`; the error says what is wrong and what was expected.
    pub fn parse(url: &str) -> Result<Self> {
        let expected = "expected mqtt://HOST[:PORT]/TOPIC";
        if url.starts_with("mqtts://") {
            bail!("`{url}`: TLS (mqtts://) is not supported; use mqtt:// to a broker on a trusted network or a TLS-terminating proxy");
        }
        let Some(rest) = url.strip_prefix("mqtt://") else {
            bail!("`{url}`: {expected}");
        };
        let Some((authority, topic)) = rest.split_once('/') else {
            bail!("`{url}`: no topic; {expected}");
        };
        if topic.is_empty() {
            bail!("`{url}`: empty topic; {expected}");
        }
        if topic.contains(['+', '#', '\0']) {
            bail!("`{url}`: the topic `{topic}` contains a wildcard (+ or #) or NUL, which cannot be published to");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| anyhow::anyhow!("`{url}`: bad port `{port}`; expected 1-65535"))?;
                (host, port)
            }
            None => (authority, 1883),
        };
        if host.is_empty() {
            bail!("`{url}`: no host; {expected}");
        }
        Ok(Self {
            host: host.to_string(),
            port,
            topic: topic.to_string(),
        })
    }

    /// `HOST:PORT`, for messages.
    pub fn broker(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Where.
    pub url: MqttUrl,
    /// Put into every message as `camera_id`; also names the MQTT client.
    pub camera_id: String,
    /// 0 (at most once) or 1 (at least once).
    pub qos: u8,
    /// Messages the outbox holds while the broker is away.
    pub buffer: usize,
}

/// What happened to the messages, for the run statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublishCounts {
    /// Messages the run produced.
    pub published: u64,
    /// Acknowledged by the broker (QoS 1) or written to it (QoS 0).
    pub delivered: u64,
    /// Dropped because the outbox was full.
    pub overflowed: u64,
    /// Times the connection was lost.
    pub disconnections: u64,
}

impl PublishCounts {
    /// Messages that never reached the broker.
    pub fn undelivered(&self) -> u64 {
        self.published - self.delivered
    }
}

#[cfg(feature = "mqtt")]
pub use client::Publisher;

#[cfg(not(feature = "mqtt"))]
/// Placeholder type of a build without MQTT: [`Publisher::connect`] explains how to get it.
pub struct Publisher(std::convert::Infallible);

#[cfg(not(feature = "mqtt"))]
impl Publisher {
    /// Always an error: this build has no MQTT client.
    pub fn connect(opts: PublishOptions) -> Result<Self> {
        bail!(
            "--publish mqtt://{}/{}: this srsnet was built without MQTT support; rebuild with `cargo build --release --features mqtt`",
            opts.url.broker(),
            opts.url.topic
        )
    }

    /// Unreachable in this build.
    pub fn publish(&self, _message: &serde_json::Value) {
        match self.0 {}
    }

    /// Unreachable in this build.
    pub fn finish(self) -> (PublishCounts, Option<String>) {
        match self.0 {}
    }
}

#[cfg(feature = "mqtt")]
mod client {
    use super::{PublishCounts, PublishOptions, WINDOW};
    use anyhow::{bail, Result};
    use rumqttc::{Client, Connection, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS};
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    /// How long connecting, and the final drain without progress, may take.
    const PATIENCE: Duration = Duration::from_secs(5);
    /// Pause between reconnection attempts.
    const RETRY: Duration = Duration::from_millis(250);
    /// Largest message: a frame with many targets, far below a broker's usual limit.
    const MAX_PACKET: usize = 16 << 20;

    /// One frame's message, numbered in publishing order.
    struct Message {
        seq: u64,
        payload: Vec<u8>,
    }

    /// What the emit stage and the connection thread share.
    struct State {
        outbox: VecDeque<Message>,
        /// Handed to rumqttc, not yet written (rumqttc reports writes in order).
        handed: VecDeque<Message>,
        /// Written, waiting for the broker's acknowledgement, by packet id.
        inflight: BTreeMap<u16, Message>,
        connected: bool,
        /// The connection thread has ended.
        ended: bool,
        last_error: Option<String>,
        counts: PublishCounts,
    }

    /// A connection to one broker, publishing to one topic.
    pub struct Publisher {
        shared: Arc<(Mutex<State>, Condvar)>,
        client: Client,
        opts: PublishOptions,
    }

    impl Publisher {
        /// Connects to the broker; an error names it when it cannot be reached or refuses.
        pub fn connect(opts: PublishOptions) -> Result<Self> {
            if opts.qos > 1 {
                bail!("--publish-qos {}: expected 0 or 1", opts.qos);
            }
            let mut mqtt = MqttOptions::new(
                format!("srsnet-{}-{}", opts.camera_id, std::process::id()),
                opts.url.host.clone(),
                opts.url.port,
            );
            mqtt.set_keep_alive(Duration::from_secs(5))
                .set_clean_session(true)
                .set_inflight(WINDOW as u16)
                .set_max_packet_size(MAX_PACKET, MAX_PACKET);
            let (client, mut connection) = Client::new(mqtt, 2 * WINDOW);
            let broker = opts.url.broker();
            // The first connection is made here, so that a wrong address fails the run at once.
            match connection.recv_timeout(PATIENCE) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
                Ok(Ok(other)) => bail!("MQTT broker {broker}: expected a CONNACK, got {other:?}"),
                Ok(Err(e)) => bail!("cannot connect to the MQTT broker {broker}: {}", describe(&e)),
                Err(_) => bail!("cannot connect to the MQTT broker {broker}: no answer within {PATIENCE:?}"),
            }
            let shared = Arc::new((
                Mutex::new(State {
                    outbox: VecDeque::new(),
                    handed: VecDeque::new(),
                    inflight: BTreeMap::new(),
                    connected: true,
                    ended: false,
                    last_error: None,
                    counts: PublishCounts::default(),
                }),
                Condvar::new(),
            ));
            let publisher = Self { shared, client, opts };
            let (shared, client, qos, topic) = (
                publisher.shared.clone(),
                publisher.client.clone(),
                publisher.qos(),
                publisher.opts.url.topic.clone(),
            );
            std::thread::Builder::new()
                .name("mqtt".into())
                .spawn(move || drive(connection, &shared, &client, qos, &topic, broker))?;
            Ok(publisher)
        }

        fn qos(&self) -> QoS {
            if self.opts.qos == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            }
        }

        /// Queues one frame's message (`camera_id` is added). Never blocks on the network.
        pub fn publish(&self, message: &serde_json::Value) {
            let mut message = message.clone();
            message["camera_id"] = serde_json::json!(self.opts.camera_id);
            let (lock, _) = &*self.shared;
            let mut s = locked(lock);
            let seq = s.counts.published;
            s.counts.published += 1;
            if s.outbox.len() >= self.opts.buffer {
                s.outbox.pop_front();
                s.counts.overflowed += 1;
            }
            s.outbox.push_back(Message {
                seq,
                payload: message.to_string().into_bytes(),
            });
            pump(&mut s, &self.client, self.qos(), &self.opts.url.topic);
        }

        /// Waits until every message is delivered, or nothing has moved for a few seconds, then
        /// disconnects. Returns the counts and, when some messages never arrived, why.
        pub fn finish(self) -> (PublishCounts, Option<String>) {
            let (lock, cvar) = &*self.shared;
            let mut s = locked(lock);
            let mut progress = (s.counts.delivered, Instant::now());
            while s.counts.undelivered() > s.counts.overflowed && !s.ended {
                if s.counts.delivered != progress.0 {
                    progress = (s.counts.delivered, Instant::now());
                } else if progress.1.elapsed() > PATIENCE {
                    break;
                }
                s = cvar
                    .wait_timeout(s, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            let counts = s.counts.clone();
            let failure = (counts.undelivered() > 0).then(|| {
                let waiting = counts.undelivered() - counts.overflowed;
                format!(
                    "MQTT broker {}: {} of {} messages were not delivered ({} dropped when the {}-message buffer was full, {} still waiting{})",
                    self.opts.url.broker(),
                    counts.undelivered(),
                    counts.published,
                    counts.overflowed,
                    self.opts.buffer,
                    waiting,
                    match (&s.last_error, s.connected) {
                        (Some(e), false) => format!("; the broker is unreachable: {e}"),
                        _ => String::new(),
                    }
                )
            });
            drop(s);
            // The connection thread ends at its next event (a ping within the keep-alive).
            let _ = self.client.try_disconnect();
            (counts, failure)
        }
    }

    fn locked(lock: &Mutex<State>) -> MutexGuard<'_, State> {
        lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands waiting messages to rumqttc while connected and the window has room.
    fn pump(s: &mut State, client: &Client, qos: QoS, topic: &str) {
        while s.connected && s.handed.len() + s.inflight.len() < WINDOW {
            let Some(m) = s.outbox.pop_front() else { break };
            // The request channel holds 2·WINDOW, more than can be handed: this cannot be full.
            match client.try_publish(topic, qos, false, m.payload.clone()) {
                Ok(()) => s.handed.push_back(m),
                Err(_) => {
                    s.outbox.push_front(m);
                    break;
                }
            }
        }
    }

    /// The connection thread: follows rumqttc's events, reconnecting after every failure.
    fn drive(
        mut connection: Connection,
        shared: &(Mutex<State>, Condvar),
        client: &Client,
        qos: QoS,
        topic: &str,
        broker: String,
    ) {
        let (lock, cvar) = shared;
        for event in connection.iter() {
            let mut s = locked(lock);
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if !s.connected {
                        eprintln!("MQTT broker {broker}: connected again");
                    }
                    s.connected = true;
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(m) = s.handed.pop_front() {
                        if qos == QoS::AtMostOnce {
                            s.counts.delivered += 1;
                        } else {
                            s.inflight.insert(pkid, m);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if s.inflight.remove(&ack.pkid).is_some() {
                        s.counts.delivered += 1;
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    lost(&mut s, &broker, &e);
                    drop(s);
                    cvar.notify_all();
                    std::thread::sleep(RETRY);
                    continue;
                }
            }
            pump(&mut s, client, qos, topic);
            drop(s);
            cvar.notify_all();
        }
        locked(lock).ended = true;
        cvar.notify_all();
    }

    /// After a connection failure: everything not acknowledged goes back to the outbox, in order.
    fn lost(s: &mut State, broker: &str, e: &ConnectionError) {
        let why = describe(e);
        if s.connected {
            eprintln!("warning: MQTT broker {broker}: connection lost ({why}); buffering and reconnecting");
            s.counts.disconnections += 1;
        }
        s.connected = false;
        s.last_error = Some(why);
        let mut back: Vec<Message> = std::mem::take(&mut s.inflight).into_values().collect();
        back.extend(s.handed.drain(..));
        back.sort_by_key(|m| m.seq);
        for m in back.into_iter().rev() {
            s.outbox.push_front(m);
        }
    }

    fn describe(e: &ConnectionError) -> String {
        match e {
            ConnectionError::Io(io) => io.to_string(),
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_and_without_a_port() {
        let u = MqttUrl::parse("mqtt://broker.local:1884/site/cam-1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.topic.as_str()),
            ("broker.local", 1884, "site/cam-1")
        );
        assert_eq!(MqttUrl::parse("mqtt://10.0.0.2/t").unwrap().port, 1883);
        assert_eq!(MqttUrl::parse("mqtt://10.0.0.2/t").unwrap().broker(), "10.0.0.2:1883");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, why) in [
            ("mqtt://h", "no topic"),
            ("mqtt://h:x/t", "bad port"),
            ("mqtt://h:70000/t", "bad port"),
            ("mqtt://h/+", "wildcard"),
            ("tcp://h/t", "expected mqtt://"),
        ] {
            let e = MqttUrl::parse(url).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(url), "{url}: {e}");
        }
    }

    #[test]
    fn undelivered_is_published_minus_delivered() {
        let c = PublishCounts {
            published: 10,
            delivered: 7,
            overflowed: 2,
            disconnections: 1,
        };
        assert_eq!(c.undelivered(), 3);
    }
}
